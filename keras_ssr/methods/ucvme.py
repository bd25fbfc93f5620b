"""`UCVME`: co-trained heteroscedastic regressors with uncertainty consistency
and variational (MC-dropout) model ensembling."""

import dataclasses

import keras
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option, parse_floats
from keras_ssr.losses.heteroscedastic_loss import heteroscedastic_loss
from keras_ssr.methods.hashed_dropout import global_batch_dropout
from keras_ssr.methods.ssr_model import (
    SSRModel,
    VariableGroup,
    check_choice,
    check_finite,
)
from keras_ssr.models.ssr_regressor import SSRRegressor

LABELED_VARIANCES = ("paper", "reference")


@dataclasses.dataclass
class UCVMEConfig(ConfigSection):
    """UCVME's constructor arguments (see `UCVME`), with their sources."""

    name = "ucvme"
    title = "UCVME (method ucvme)"

    unlabeled_weight: float = option(
        10.0,
        "w_ulb, the weight of the unlabeled losses (eq. 11); no ramp-up",
        flag="--ucvme-unlabeled-weight",
        source="paper, age estimation and echo settings; S-Tables 1-2 (w_ulb = 10)",
    )
    dropout_rate: float = option(
        0.05,
        "MC-dropout rate on the features before the mean and log-variance heads",
        flag="--ucvme-dropout",
        source="paper settings (5 %)",
    )
    num_samples: int = option(
        5,
        "T, MC-dropout passes per model for the pseudo-labels (eq. 7-8)",
        flag="--ucvme-samples",
        source="paper settings (T = 5)",
    )
    labeled_variance: str = option(
        "paper",
        "log-variance of the labeled loss: paper (each model its own, eq. 3) or "
        "reference (the mean of both models', the authors' code)",
        flag="--ucvme-labeled-variance",
        choices=LABELED_VARIANCES,
        source="paper eq. 3",
    )
    log_variance_range: tuple | None = option(
        None,
        "clamp of the predicted log-variances z as low,high (write "
        "--ucvme-log-variance-range=-10,10); default none, as the paper",
        flag="--ucvme-log-variance-range",
        parse=parse_floats,
        source="paper and reference code: no clamp",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class RegressorEnsemble(keras.Model):
    """The mean prediction of several regressors: what UCVME serves.

    Raw inputs in, target units out, like each member. Inference mode only
    matters to the members (`training=False`: dropout off).

    Args:
        members: the `SSRRegressor`s to average (built, with the same inputs).
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> members = [SSRRegressor(MLPBackbone((4,))) for _ in range(2)]
    >>> RegressorEnsemble(members)(np.ones((3, 2), "float32")).shape
    (3, 1)
    """

    def __init__(self, members, **kwargs):
        super().__init__(**kwargs)
        if not members:
            raise ValueError("RegressorEnsemble needs at least one member.")
        self.members = list(members)
        self.built = all(member.built for member in self.members)

    @property
    def input_dtype(self):
        """The members' input dtype (e.g. string for a text backbone)."""
        return self.members[0].input_dtype

    def build(self, input_shape):
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        outputs = [member(inputs, training=training) for member in self.members]
        return keras.ops.mean(keras.ops.stack(outputs), axis=0)

    def get_config(self):
        config = super().get_config()
        config["members"] = [
            keras.saving.serialize_keras_object(m) for m in self.members
        ]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [
            keras.saving.deserialize_keras_object(m) for m in config["members"]
        ]
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_ssr")
class UCVME(SSRModel):
    """Uncertainty-consistent variational model ensembling (UCVME).

    Two regressors of the same architecture and different initialisation,
    m in {a, b} (`regressor` and a copy of its configuration), each with a mean
    head (the regressor's own) and a log-variance head z (method state), both
    reading the backbone features through MC dropout (`dropout_rate`, the
    method's own; a backbone's dropout, if configured, is sampled too).
    With standardised targets, per batch (the paper's equations):

    - labeled: `L_reg^lb = sum_m mean[(yhat_m - y)^2 / (2 exp(z_m)) + z_m / 2]`
      (eq. 3; `labeled_variance="reference"` uses `(z_a + z_b) / 2` for both
      models, as the authors' code) and `L_unc^lb = mean[(z_a - z_b)^2]`
      (eq. 2);
    - pseudo-labels by variational model ensembling: T dropout passes of both
      models on the unlabeled batch, `y~ = mean_t (yhat_a^t + yhat_b^t) / 2`
      and `z~ = mean_t (z_a^t + z_b^t) / 2` (eq. 7-8), stop-gradient, with the
      current weights of this step;
    - unlabeled: `L_reg^ulb = sum_m mean[(yhat_m - y~)^2 / (2 exp(z~)) +
      z~ / 2]` (eq. 10) and `L_unc^ulb = sum_m mean[(z_m - z~)^2]` (eq. 9);
    - total: `L = L_reg^lb + L_unc^lb + w_ulb (L_reg^ulb + L_unc^ulb)`
      (eq. 11), `w_ulb = unlabeled_weight` (with the `SSRModel` ramp-up when
      `rampup_steps > 0`; the paper has none).

    Both models are updated by the compiled optimizer (one variable group).
    UCVME uses one view of the unlabeled batch (the weak one) for the
    pseudo-labels and the predictions, as the paper.

    Inference (`call`, `inference_model`, the export) is the mean of both
    models' predictions with dropout off. The paper averages T dropout passes
    at test time too; with dropout only before the linear heads and a
    deterministic backbone, each pass is an unbiased sample of the dropout-off
    prediction, so the deterministic mean is that ensemble's limit (T -> inf)
    and the served model is deterministic.

    Dropout masks come from a counter-based hash (`hashed_dropout`) of a
    per-step key (from a `keras.random.SeedGenerator`), the pass and each
    element's index in the global batch, sliced to the replica's rows: a
    `MirroredStrategy` step and a jit-compiled step equal the one-device graph
    step.

    The cost per step: two models, each with 1 labeled and 1 + T unlabeled
    forward passes (the T passes without gradient, as one batch of T copies).

    Args:
        regressor: model a, the `SSRRegressor` to train; model b is a fresh
            regressor from its configuration.
        dropout_rate: MC-dropout rate before both heads, in [0, 1).
        num_samples: T, dropout passes per model for the pseudo-labels.
        labeled_variance: `"paper"` or `"reference"` (see above).
        log_variance_range: `(low, high)` clamp of every predicted z, or
            `None` (the paper: no clamp).
        seed: seed of the dropout masks (`None`: from Keras' global seed).
        unlabeled_weight: w_ulb (paper: 10).
        rampup_steps: linear ramp-up of w_ulb (paper: 0).
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> model = UCVME(SSRRegressor(MLPBackbone((8,))), num_samples=5)
    >>> model.build((None, 3))

    References:
        Dai, Li and Cheng, Semi-Supervised Deep Regression with Uncertainty
        Consistency and Variational Model Ensembling via Bayesian Neural
        Networks, AAAI 2023 (code: github.com/xmed-lab/UCVME).
    """

    config_sections = (UCVMEConfig,)
    loss_terms = (
        "loss",
        "labeled_loss",
        "labeled_consistency",
        "unlabeled_loss",
        "unlabeled_consistency",
        "log_variance",
    )

    def __init__(
        self,
        regressor,
        dropout_rate=0.05,
        num_samples=5,
        labeled_variance="paper",
        log_variance_range=None,
        seed=None,
        unlabeled_weight=10.0,
        rampup_steps=0,
        **kwargs,
    ):
        super().__init__(
            regressor,
            unlabeled_weight=unlabeled_weight,
            rampup_steps=rampup_steps,
            **kwargs,
        )
        self.dropout_rate = check_finite("dropout_rate", dropout_rate, 0.0, 1.0)
        if self.dropout_rate == 1.0:
            raise ValueError("dropout_rate must be < 1: it would drop every feature.")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        self.num_samples = int(num_samples)
        check_choice("labeled_variance", labeled_variance, LABELED_VARIANCES)
        self.labeled_variance = labeled_variance
        if log_variance_range is not None:
            low, high = (float(v) for v in log_variance_range)
            if not low < high:
                raise ValueError(
                    f"log_variance_range={log_variance_range}: low must be < high."
                )
            log_variance_range = (low, high)
        self.log_variance_range = log_variance_range
        self.seed = seed
        config = regressor.get_config()
        config["name"] = f"{regressor.name}_b"
        self.second_regressor = SSRRegressor.from_config(config)
        self.log_variance_heads = [
            keras.layers.Dense(1, name=f"log_variance_{m}") for m in "ab"
        ]
        self.seed_generator = keras.random.SeedGenerator(seed, name="ucvme_dropout")

    @property
    def members(self):
        """The two co-trained regressors, `(a, b)`."""
        return (self.regressor, self.second_regressor)

    def build_method(self, input_shape):
        self.second_regressor.build(input_shape)
        features = self.regressor.backbone.compute_output_shape(input_shape)
        for head in self.log_variance_heads:
            head.build(features)

    def variable_groups(self):
        """One group: both regressors and both log-variance heads."""
        variables = [v for member in self.members for v in member.trainable_weights]
        for head in self.log_variance_heads:
            variables += head.trainable_weights
        return {"regressor": VariableGroup(variables, self.optimizer)}

    def call(self, inputs, training=False):
        outputs = [member(inputs, training=training) for member in self.members]
        return (outputs[0] + outputs[1]) / 2

    def inference_model(self):
        """`RegressorEnsemble` of both regressors (dropout off)."""
        return RegressorEnsemble(self.members, name="ucvme_ensemble")

    def heads(self, member, features, key, stream):
        """`(mean, log_variance)` of model `member` (0: a, 1: b) on `features`,
        each through its own MC-dropout mask (`key`: the step's `(2,)` seed,
        `stream`: an int naming this pass, see `hashed_uniform`)."""
        regressor = self.members[member]
        mean = regressor.head(self.dropout(features, key, 2 * stream))
        log_variance = self.log_variance_heads[member](
            self.dropout(features, key, 2 * stream + 1)
        )
        if self.log_variance_range is not None:
            log_variance = keras.ops.clip(log_variance, *self.log_variance_range)
        return mean, log_variance

    def forward(self, member, x, key, stream):
        """`(mean, log_variance)` of model `member` on inputs `x`, training
        mode, one dropout sample."""
        features = self.members[member].features(x, training=True)
        return self.heads(member, features, key, stream)

    def mc_samples(self, x, key):
        """T dropout samples of both models on `x`, stop-gradient.

        Returns `(means, log_variances)`, each of shape `(2, T, batch, 1)`
        (model, sample, row). The T passes are one forward pass over T copies
        of the batch (training mode, as the authors' code); `key` is the step's
        `(2,)` seed.
        """
        samples = self.num_samples
        tiled = tf.tile(x, [samples] + [1] * (len(x.shape) - 1))
        means, log_variances = [], []
        for member in range(2):
            features = self.members[member].features(tiled, training=True)
            features = keras.ops.reshape(
                features, (samples, -1) + tuple(features.shape[1:])
            )
            mean, log_variance = self.heads(member, features, key, 4 + member)
            means.append(mean)
            log_variances.append(log_variance)
        stop = keras.ops.stop_gradient
        return stop(keras.ops.stack(means)), stop(keras.ops.stack(log_variances))

    def pseudo_labels(self, x, key):
        """`(y~, z~)` of eq. 7-8: the mean over both models and T samples."""
        means, log_variances = self.mc_samples(x, key)
        return (
            keras.ops.mean(means, axis=(0, 1)),
            keras.ops.mean(log_variances, axis=(0, 1)),
        )

    def dropout(self, features, key, stream):
        """Inverted dropout with a mask drawn for the global batch and sliced
        to this replica's rows (the batch axis is the second to last)."""
        rate = self.dropout_rate
        if rate == 0.0:
            return features
        return global_batch_dropout(features, rate, key, stream, axis=-2)

    def compute_losses(self, batch):
        x_l, y_l = batch["labeled"]
        x_u = batch["unlabeled"][0]
        key = self.seed_generator.next()
        labeled = [self.forward(m, x_l, key, m) for m in range(2)]
        unlabeled = [self.forward(m, x_u, key, 2 + m) for m in range(2)]
        pseudo = self.pseudo_labels(x_u, key)
        terms = ucvme_terms(
            y_l,
            labeled,
            unlabeled,
            pseudo,
            self.unlabeled_weight_now(),
            self.labeled_variance,
        )
        terms["labeled_predictions"] = keras.ops.stop_gradient(
            (labeled[0][0] + labeled[1][0]) / 2
        )
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(
            dropout_rate=self.dropout_rate,
            num_samples=self.num_samples,
            labeled_variance=self.labeled_variance,
            log_variance_range=self.log_variance_range,
            seed=self.seed,
        )
        return config


def ucvme_terms(y_l, labeled, unlabeled, pseudo, weight, labeled_variance="paper"):
    """UCVME's loss terms (eq. 2, 3, 9, 10, 11) from the models' outputs.

    Args:
        y_l: labeled targets (standardised), shape `(n,)` or `(n, 1)`.
        labeled: `[(mean_a, z_a), (mean_b, z_b)]` on the labeled batch,
            each `(n, 1)`.
        unlabeled: the same on the unlabeled batch.
        pseudo: `(y~, z~)`, the ensembled pseudo-labels (eq. 7-8).
        weight: w_ulb.
        labeled_variance: `"paper"` (eq. 3: each model its own z) or
            `"reference"` (both use `(z_a + z_b) / 2`).

    Returns:
        A dict: `loss` (eq. 11), `labeled_loss` (eq. 3), `labeled_consistency`
        (eq. 2), `unlabeled_loss` (eq. 10), `unlabeled_consistency` (eq. 9)
        and `log_variance` (the mean of z~).
    """
    dtype = labeled[0][0].dtype
    y_l = keras.ops.reshape(keras.ops.cast(y_l, dtype), (-1, 1))
    (mean_a, z_a), (mean_b, z_b) = labeled
    if labeled_variance == "reference":
        z_a = z_b = (z_a + z_b) / 2
    labeled_loss = heteroscedastic_loss(y_l, mean_a, z_a) + heteroscedastic_loss(
        y_l, mean_b, z_b
    )
    labeled_consistency = keras.ops.mean(
        keras.ops.square(labeled[0][1] - labeled[1][1])
    )
    y_tilde, z_tilde = pseudo
    unlabeled_loss = sum(
        heteroscedastic_loss(y_tilde, m, z_tilde) for m, _ in unlabeled
    )
    unlabeled_consistency = sum(
        keras.ops.mean(keras.ops.square(z - z_tilde)) for _, z in unlabeled
    )
    weight = keras.ops.cast(weight, dtype)
    return {
        "loss": labeled_loss
        + labeled_consistency
        + weight * (unlabeled_loss + unlabeled_consistency),
        "labeled_loss": labeled_loss,
        "labeled_consistency": labeled_consistency,
        "unlabeled_loss": unlabeled_loss,
        "unlabeled_consistency": unlabeled_consistency,
        "log_variance": keras.ops.mean(z_tilde),
    }
