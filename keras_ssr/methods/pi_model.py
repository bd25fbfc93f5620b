"""`PiModel`: consistency between two stochastic passes of each unlabeled row."""

import dataclasses

import keras

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.ssr_model import SSLConfig, SSRModel, check_choice, mse

RAMPUP_SHAPES = ("gaussian", "linear")


@dataclasses.dataclass
class SelfEnsemblingConfig(ConfigSection):
    """The ramp-up shared by the Pi-model and Temporal Ensembling."""

    name = "self_ensembling"
    title = "Pi-model and Temporal Ensembling (methods pi_model, temporal_ensembling)"

    rampup_shape: str = option(
        "gaussian",
        "ramp-up of the unlabeled weight over --rampup-fraction of training: "
        "gaussian exp(-5 (1 - t)^2) or linear t",
        choices=RAMPUP_SHAPES,
        source="paper Sec. 3 and reference code rampup() (80 of 300 epochs)",
    )


@dataclasses.dataclass
class PiModelConfig(ConfigSection):
    """The Pi-model's own setting."""

    name = "pi_model"
    title = "Pi-model (method pi_model)"

    pi_stop_gradient: bool = option(
        False,
        "stop the gradient of the weak-view branch (the USB/RankUp code's "
        "Pi-model); the paper trains both branches",
        source="paper Algorithm 1 and reference code: no stop-gradient",
    )


class SelfEnsembling(SSRModel):
    """Base of `PiModel` and `TemporalEnsembling`: the ramp-up of lambda.

    With `rampup_shape="gaussian"` (the paper's), the unlabeled weight is
    `lambda * exp(-5 (1 - T)^2)`, `T = min(1, step / rampup_steps)`; with
    `"linear"`, `lambda * T` as for the other methods. The paper ramps up over
    the first 80 of 300 epochs (`--rampup-fraction 0.27`); the Gaussian starts
    at `exp(-5) = 0.0067`, not exactly 0 (the reference code sets the first
    epoch's weight to 0).

    Args:
        regressor: the `SSRRegressor` to train.
        rampup_shape: `"gaussian"` or `"linear"`.
        **kwargs: `SSRModel` arguments (`unlabeled_weight`, `rampup_steps`).
    """

    config_sections = (SSLConfig, SelfEnsemblingConfig)

    def __init__(self, regressor, rampup_shape="gaussian", **kwargs):
        super().__init__(regressor, **kwargs)
        check_choice("rampup_shape", rampup_shape, RAMPUP_SHAPES)
        self.rampup_shape = rampup_shape

    def unlabeled_weight_now(self):
        """lambda_t under the configured ramp-up shape."""
        if self.rampup_shape == "linear" or self.rampup_steps <= 0:
            return super().unlabeled_weight_now()
        step = keras.ops.cast(self.optimizer.iterations, self.compute_dtype)
        progress = keras.ops.minimum(1.0, step / float(self.rampup_steps))
        return self.unlabeled_weight * keras.ops.exp(-5.0 * (1.0 - progress) ** 2)

    def get_config(self):
        config = super().get_config()
        config.update(rampup_shape=self.rampup_shape)
        return config


@keras.saving.register_keras_serializable(package="keras_ssr")
class PiModel(SelfEnsembling):
    """Pi-model: two stochastic passes of every unlabeled row must agree.

    Each unlabeled row is evaluated twice in training mode, on its weak and on
    its strong view (two independent augmentations, plus the backbone's
    dropout if it has any), and the squared difference of the two predictions
    is penalised (paper Algorithm 1):

        L = MSE_l + w(t) * mean_j (f(weak(x_j)) - f(strong(x_j)))^2.

    As in the paper and its reference code, the gradient flows through both
    branches; `pi_stop_gradient=True` treats the weak-view prediction as a
    fixed target (the USB / RankUp code's Pi-model). For regression the
    "prediction vector" is the one standardised output. The paper draws both
    branches from the same augmentation; keras-ssr's stream gives a weak and a
    strong view, which are used as the two branches.

    Args:
        regressor: the `SSRRegressor` to train.
        pi_stop_gradient: stop the gradient of the weak-view branch.
        rampup_shape: `"gaussian"` (paper) or `"linear"`, see `SelfEnsembling`.
        **kwargs: `SSRModel` arguments (`unlabeled_weight`, `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = PiModel(SSRRegressor(MLPBackbone((8,))), unlabeled_weight=1.0)

    References:
        Laine & Aila, Temporal Ensembling for Semi-Supervised Learning,
        ICLR 2017, Sec. 2.1 and Algorithm 1.
    """

    config_sections = (SSLConfig, SelfEnsemblingConfig, PiModelConfig)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss")

    def __init__(self, regressor, pi_stop_gradient=False, **kwargs):
        super().__init__(regressor, **kwargs)
        self.pi_stop_gradient = bool(pi_stop_gradient)

    def compute_losses(self, batch):
        x_weak, x_strong = batch["unlabeled"]
        terms = self.labeled_terms(batch)
        z = self.regressor.standardized(x_weak, training=True)
        z_tilde = self.regressor.standardized(x_strong, training=True)
        if self.pi_stop_gradient:
            z = keras.ops.stop_gradient(z)
        # Algorithm 1: w(t) * 1/|B| sum_i ||z_i - z~_i||^2 (C = 1 output).
        terms["unlabeled_loss"] = mse(keras.ops.reshape(z, (-1,)), z_tilde)
        terms["loss"] = terms["labeled_loss"] + (
            self.unlabeled_weight_now() * terms["unlabeled_loss"]
        )
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(pi_stop_gradient=self.pi_stop_gradient)
        return config
