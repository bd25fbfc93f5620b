"""`PseudoLabel`: FixMatch-style pseudo-labels for regression."""

import dataclasses

import keras

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.imputers import OwnPrediction
from keras_ssr.methods.ssr_model import SSLConfig, SSRModel, check_choice, mse

PSEUDO_LABEL_MODES = ("inference", "training")


@dataclasses.dataclass
class PseudoLabelConfig(ConfigSection):
    """How pseudo-labels are predicted (every method built on `PseudoLabel`).

    Args:
        pseudo_label_mode: `"inference"` (dropout off, BatchNorm moving
            statistics) or `"training"` (dropout on, batch statistics; the
            reference codes of HPL and L2I predict pseudo-labels with the
            model in training mode).
    """

    name = "pseudo_labels"
    title = "pseudo-labels (pseudo_label, mean_teacher, hpl, hpl_joint, l2i_v1, l2i_v2)"

    pseudo_label_mode: str = option(
        "inference",
        "predict the weak-view pseudo-labels in inference or training mode "
        "(dropout, BatchNorm batch statistics)",
        choices=PSEUDO_LABEL_MODES,
        source="reference codes (HPL, L2I): training mode",
    )


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
        pseudo_label_mode: predict the pseudo-labels in `"inference"` mode
            (default) or in `"training"` mode (dropout active, BatchNorm batch
            statistics, as the reference codes of HPL and L2I do; a
            training-mode forward also updates BatchNorm moving statistics).
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

    config_sections = (SSLConfig, PseudoLabelConfig)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss")

    def __init__(self, regressor, pseudo_label_mode="inference", **kwargs):
        check_choice("pseudo_label_mode", pseudo_label_mode, PSEUDO_LABEL_MODES)
        super().__init__(regressor, **kwargs)
        self.pseudo_label_mode = pseudo_label_mode
        self.imputer = OwnPrediction()

    def build_method(self, input_shape):
        self.imputer.build_from(self.regressor, input_shape)

    def after_update(self, batch):
        self.imputer.update(self.regressor)

    @property
    def pseudo_label_training(self):
        """True when pseudo-labels are predicted in training mode."""
        return self.pseudo_label_mode == "training"

    def pseudo_labels(self, x_weak):
        """Stop-gradient pseudo-labels of the weak view (standardised units)."""
        return self.imputer.labels(
            self.regressor, x_weak, training=self.pseudo_label_training
        )

    def compute_losses(self, batch):
        x_weak, x_strong = batch["unlabeled"]
        terms = self.labeled_terms(batch)
        prediction = self.regressor.standardized(x_strong, training=True)
        terms["unlabeled_loss"] = mse(self.pseudo_labels(x_weak), prediction)
        terms["loss"] = terms["labeled_loss"] + (
            self.unlabeled_weight_now() * terms["unlabeled_loss"]
        )
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(pseudo_label_mode=self.pseudo_label_mode)
        return config
