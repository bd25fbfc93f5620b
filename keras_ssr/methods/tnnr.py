"""`TNNR`: twin neural network regression with loop consistency on unlabeled rows."""

import dataclasses

import keras
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.labeled_anchors import PredictsFromAnchors
from keras_ssr.methods.replica_gather import gather_rows, local_rows
from keras_ssr.methods.ssr_model import SSRModel, VariableGroup, check_finite
from keras_ssr.models.pair_head import PairHead, anchor_ensemble
from keras_ssr.models.twin_anchor_regressor import TwinAnchorRegressor


@dataclasses.dataclass
class TNNRConfig(ConfigSection):
    """TNNR's constructor arguments (see `TNNR`), with their sources."""

    name = "tnnr"
    title = "TNNR (method tnnr)"

    loop_weight: float = option(
        1.0,
        "Lambda: weight of the loop-consistency loss on unlabeled triplets",
        flag="--tnnr-loop-weight",
        source="not determined (the public reference script sets 0.0); 1 = "
        "labeled pairs and loops weighted alike",
    )
    head_units: int = option(
        128,
        "width of the hidden layer of the pair head on [h(a), h(b)]",
        flag="--tnnr-head-units",
        source="reference code (128-unit ReLU layers on the concatenated pair)",
    )
    num_anchors: int = option(
        0,
        "labeled anchors a prediction averages over (0: every labeled row)",
        flag="--tnnr-num-anchors",
        source="reference code: every training row",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class TNNR(PredictsFromAnchors, SSRModel):
    """Twin network predicting target differences, F(x_i, x_j) ~ y_i - y_j.

    Both inputs of a pair go through the regressor's backbone (a twin: shared
    weights) and a `PairHead` reads the concatenation of their features (the
    paper's network reads the concatenated raw inputs; our backbones take one
    input, so the twin shares the backbone and concatenates its features).
    Each step gathers the labeled batch (n rows) and the raw unlabeled batch
    (m rows; the paper uses no augmentation) and minimises

        L = mean_{i,j} (F(x_i, x_j) - (y_i - y_j))^2
            + Lambda * mean_k (F(u_k, u_k+1) + F(u_k+1, u_k+2) + F(u_k+2, u_k))^2,

    the first mean over all n^2 ordered labeled pairs (both orders, and the
    pairs (i, i) whose target is 0), the second over the m loops of three
    consecutive rows of the unlabeled batch (indices mod m; the batch is
    shuffled): the loop consistency, whose target is 0 because differences
    around any loop sum to zero. Under `tf.distribute` the step all-gathers
    the features and targets (`gather_rows`), so pairs and loops span the
    global batch and every replica computes the one-device loss.

    The prediction for x (`call`, hence `evaluate`, and `inference_model()`,
    hence the export) is the ensemble over the labeled anchors k,
    `mean_k (F(x, x_k)/2 - F(x_k, x)/2 + y_k)` (the symmetric estimate of the
    reference code), de-standardised; `call` recomputes the anchors' features with
    the current weights, `inference_model()` bakes them. The regressor's Dense
    head is not used.

    Args:
        regressor: the `SSRRegressor` whose backbone is the twin.
        loop_weight: Lambda, weight of the loop-consistency loss (>= 0).
        head_units: width of the pair head's hidden layer.
        num_anchors: anchors to average over, a fixed random subset of the
            labeled rows (0: all of them).
        **kwargs: `SSRModel` arguments.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = TNNR(SSRRegressor(MLPBackbone((8,))), loop_weight=1.0)

    References:
        Wetzel, Melko & Tamblyn, Twin neural network regression is a
        semi-supervised regression algorithm, Mach. Learn.: Sci. Technol. 2022
        (reference code: github.com/sjwetzel/PublicSemiSupervisedTNNR).
        Wetzel, Ryczko, Melko & Tamblyn, Twin neural network regression,
        Applied AI Letters 2022.
    """

    raw_unlabeled_view = True
    config_sections = (TNNRConfig,)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss")

    def __init__(
        self, regressor, loop_weight=1.0, head_units=128, num_anchors=0, **kwargs
    ):
        super().__init__(regressor, **kwargs)
        self.loop_weight = check_finite("loop_weight", loop_weight, low=0.0)
        if int(num_anchors) < 0:
            raise ValueError(f"num_anchors must be >= 0 (0: all), got {num_anchors}.")
        self.num_anchors = int(num_anchors)
        self.pair_head = PairHead(head_units, name="pair_head")

    @property
    def head_units(self):
        return self.pair_head.units

    def build_method(self, input_shape):
        self.pair_head.build(self.regressor.backbone.compute_output_shape(input_shape))

    def variable_groups(self):
        """`network`: the backbone and the pair head (compiled optimizer)."""
        return {
            "network": VariableGroup(
                self.regressor.backbone.trainable_weights
                + self.pair_head.trainable_weights,
                self.optimizer,
            )
        }

    def compute_losses(self, batch):
        x_l, y_l = batch["labeled"]
        features_l = self.regressor.features(x_l, training=True)
        features_u = self.regressor.features(batch["unlabeled"][0], training=True)
        features_l, features_u = gather_rows(features_l), gather_rows(features_u)
        targets = gather_rows(keras.ops.cast(y_l, features_l.dtype))
        pairs = self.pair_head.pairwise(features_l, features_l)
        terms = {
            "labeled_loss": pair_loss(pairs, targets),
            "unlabeled_loss": keras.ops.mean(
                keras.ops.square(loop_residuals(self.pair_head, features_u))
            ),
            "labeled_predictions": local_rows(
                batch_ensemble(pairs, targets), tf.shape(x_l)[0]
            ),
        }
        terms["loss"] = terms["labeled_loss"] + (
            self.loop_weight * terms["unlabeled_loss"]
        )
        return terms

    def call(self, inputs, training=False):
        anchors = self.required_anchors()
        prediction = anchor_ensemble(
            self.pair_head,
            self.regressor.features(inputs, training=training),
            anchors.features(self.regressor.features),
            anchors.y,
        )
        return self.regressor.destandardize(prediction)

    def inference_model(self):
        """A `TwinAnchorRegressor` with the anchors' features computed with
        the current weights."""
        anchors = self.required_anchors()
        return TwinAnchorRegressor.from_anchors(
            self.regressor,
            self.pair_head,
            anchors.features(self.regressor.features),
            anchors.y,
            name="tnnr_anchors",
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            loop_weight=self.loop_weight,
            head_units=self.head_units,
            num_anchors=self.num_anchors,
        )
        return config


def pair_loss(pairs, targets):
    """mean_{i,j} (F_ij - (y_i - y_j))^2 over all ordered pairs, given the
    matrix `pairs[i, j] = F(x_i, x_j)` and the targets y."""
    differences = targets[:, None] - targets[None, :]
    return keras.ops.mean(keras.ops.square(pairs - differences))


def loop_residuals(head, features):
    """F(u_k, u_k+1) + F(u_k+1, u_k+2) + F(u_k+2, u_k) for each row k of
    `features` (indices mod m), shape (m,): zero for consistent differences."""
    b = keras.ops.roll(features, -1, axis=0)
    c = keras.ops.roll(features, -2, axis=0)
    return head((features, b)) + head((b, c)) + head((c, features))


def batch_ensemble(pairs, targets):
    """Each row's anchor ensemble over the batch itself,
    mean_j (F_ij/2 - F_ji/2 + y_j), from the pair matrix, shape (n, 1)."""
    estimates = 0.5 * pairs - 0.5 * keras.ops.transpose(pairs) + targets[None, :]
    return keras.ops.mean(estimates, axis=1, keepdims=True)
