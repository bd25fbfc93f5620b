"""`PseudoLabel`: FixMatch-style pseudo-labels for regression."""

import keras

from keras_ssr.methods.imputers import OwnPrediction
from keras_ssr.methods.ssr_model import SSRModel, mse


@keras.saving.register_keras_serializable(package="keras_ssr")
class PseudoLabel(SSRModel):
    """Labeled MSE plus lambda_t times the weak-to-strong pseudo-label MSE.

    The pseudo-label of an unlabeled example is the imputer's prediction on
    its weak view (stop-gradient; here the model's own, `OwnPrediction`); the
    model is trained to give the same value on the strong view:
    `L = MSE_l + lambda_t * mean((yhat_weak - f(strong))^2)`.
    This is also the HPL paper's Baseline (fixed sigma^2 = 1). Subclasses
    change where pseudo-labels come from by setting `self.imputer` (Mean
    Teacher: an `EMATeacher`).

    Args:
        regressor: the `SSRRegressor` to train.
        unlabeled_weight: final lambda.
        rampup_steps: steps of the linear ramp-up of lambda.
        **kwargs: `SSRModel` arguments.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = PseudoLabel(SSRRegressor(MLPBackbone((8,))), unlabeled_weight=1.0)

    References:
        Sohn et al., FixMatch, NeurIPS 2020.
    """

    loss_terms = ("loss", "labeled_loss", "unlabeled_loss")

    def __init__(self, regressor, **kwargs):
        super().__init__(regressor, **kwargs)
        self.imputer = OwnPrediction()

    def build_method(self, input_shape):
        self.imputer.build_from(self.regressor, input_shape)

    def after_update(self, batch):
        self.imputer.update(self.regressor)

    def pseudo_labels(self, x_weak):
        """Stop-gradient pseudo-labels of the weak view (standardised units)."""
        return self.imputer.labels(self.regressor, x_weak)

    def compute_losses(self, batch):
        x_weak, x_strong = batch["unlabeled"]
        terms = self.labeled_terms(batch)
        prediction = self.regressor.standardized(x_strong, training=True)
        terms["unlabeled_loss"] = mse(self.pseudo_labels(x_weak), prediction)
        terms["loss"] = terms["labeled_loss"] + (
            self.unlabeled_weight_now() * terms["unlabeled_loss"]
        )
        return terms
