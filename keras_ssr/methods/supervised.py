"""`Supervised`: trains on the labeled stream only (the lower bound)."""

import keras

from keras_ssr.methods.ssr_model import SSRModel


@keras.saving.register_keras_serializable(package="keras_ssr")
class Supervised(SSRModel):
    """Labeled mean squared error only; the unlabeled stream is ignored.

    With every training label (`--label-ratio 1`) it is the Fully-supervised
    upper bound; with few labels, the Supervised lower bound.

    Args:
        regressor: the `SSRRegressor` to train.
        **kwargs: `SSRModel` arguments.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = Supervised(SSRRegressor(MLPBackbone((8,))))
    >>> model.compile(optimizer="adam")
    """

    uses_unlabeled = False
    config_sections = ()

    def compute_losses(self, batch):
        terms = self.labeled_terms(batch)
        terms["loss"] = terms["labeled_loss"]
        return terms
