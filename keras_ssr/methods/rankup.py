"""`RankUp`: an auxiliary pairwise-ranking classifier and regression
distribution alignment (RDA) of the pseudo-labels."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.replica_gather import gather_rows, scatter_rows
from keras_ssr.methods.ssr_model import (
    SSLConfig,
    SSRModel,
    VariableGroup,
    check_finite,
    mse,
)


@dataclasses.dataclass
class RankUpConfig(ConfigSection):
    """RankUp's constructor arguments (see `RankUp`)."""

    name = "rankup"
    title = "RankUp (methods rankup, rankup_no_rda)"

    arc_weight: float = option(
        0.2,
        "weight of the auxiliary ranking classifier's loss",
        flag="--rankup-arc-weight",
        source="reference configs arc_loss_ratio 0.2 (code default 1.0)",
    )
    arc_unlabeled_weight: float = option(
        1.0,
        "weight of the ARC's FixMatch loss on unlabeled pairs",
        flag="--rankup-arc-unlabeled-weight",
        source="reference configs arc_ulb_loss_ratio 1.0",
    )
    confidence_threshold: float = option(
        0.95,
        "ARC confidence above which a weak-view pair becomes a pseudo-label",
        flag="--rankup-threshold",
        source="reference configs p_cutoff 0.95 (FixMatch)",
    )
    rda_period: int = option(
        1024,
        "RDA: re-align the pseudo-label table every N steps (used from step N)",
        flag="--rankup-rda-period",
        source="reference configs rda_num_refine_iter 1024 (one of its epochs)",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class RankUp(SSRModel):
    """RankUp: an Auxiliary Ranking Classifier (ARC) plus RDA.

    **ARC.** A `Dense(2)` head `a(h)` (no bias: it would cancel) on the
    backbone features (beside the
    regression head) classifies ordered pairs: for rows i, j of a batch the
    pair's logits are `a(h_j) - a(h_i)` (RankNet with a two-class softmax),
    class 0 meaning "y_j > y_i". Labeled pairs (all B^2, i = j included) are
    trained with cross-entropy on the soft target `t_ij = (1 + sign(y_j -
    y_i)) / 2` (ties: 1/2). Unlabeled pairs are trained FixMatch-style: the
    pair probabilities on the weak view (stop-gradient) give hard labels
    `argmax`, kept where `max p >= confidence_threshold`, and the strong
    view's pair logits are trained on them: `L_arc_u = mean_pairs(mask * CE)`.
    The two-class softmax of a pair is computed as the sigmoid of its margin
    `d_ij = s_j - s_i`, `s = a_0 - a_1` (the same numbers, see
    `pair_margins`).

    **RDA** (regression distribution alignment). A table holds the latest
    weak-view prediction of every unlabeled row (written each step by row
    index). Every `rda_period` steps the table is re-aligned: the row of rank
    k among the N table entries gets the labeled targets' quantile at
    k / (N - 1) (`rda_quantiles`: linear interpolation of the sorted labeled
    targets, as the reference's `np.interp`), so the aligned pseudo-labels
    keep the model's ranking but follow the labeled distribution. From step
    `rda_period` on, the weak-view prediction is trained towards its aligned
    label (MSE; the reference trains the weak-view prediction, not the strong
    one). The re-alignment runs after a step, so the reference's refresh at
    iteration 1024 is the one after step 1023 here.

        L = MSE_l + lambda_t * L_rda + arc_weight * (L_arc_l +
            arc_unlabeled_weight * L_arc_u).

    Only the regressor is exported. Under `tf.distribute` the pair losses are
    computed on the global batch (ARC logits and targets are gathered, with
    gradients), and the table rows are gathered before they are written.
    `rda=False` is RankUp without RDA (`rankup_no_rda`; the reference's
    `rankup`, whose regression loss is the labeled one only).

    Args:
        regressor: the `SSRRegressor` to train.
        arc_weight: weight of the ARC loss (reference configs 0.2).
        arc_unlabeled_weight: weight of the unlabeled pair loss (ref. 1.0).
        confidence_threshold: the FixMatch confidence threshold (ref. 0.95).
        rda: use RDA.
        rda_period: steps between re-alignments of the table (ref. 1024).
        num_unlabeled: number of unlabeled rows (the table's length; a
            trainer passes it).
        **kwargs: `SSRModel` arguments: `unlabeled_weight` is RDA's weight
            (reference 1.0), `rampup_steps` its linear warm-up (reference:
            40 % of training).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = RankUp(SSRRegressor(MLPBackbone((8,))), num_unlabeled=100)

    References:
        Huang, Fu & Tsao, RankUp: Boosting Semi-Supervised Regression with an
        Auxiliary Ranking Classifier, NeurIPS 2024; the authors' code
        (pm25/semi-supervised-regression, algorithms rankup and rankuprda).
    """

    uses_unlabeled_index = True
    config_sections = (SSLConfig, RankUpConfig)
    loss_terms = (
        "loss",
        "labeled_loss",
        "unlabeled_loss",
        "arc_labeled_loss",
        "arc_unlabeled_loss",
        "arc_mask_rate",
    )

    def __init__(
        self,
        regressor,
        arc_weight=0.2,
        arc_unlabeled_weight=1.0,
        confidence_threshold=0.95,
        rda=True,
        rda_period=1024,
        num_unlabeled=None,
        **kwargs,
    ):
        super().__init__(regressor, **kwargs)
        self.arc_weight = check_finite("arc_weight", arc_weight, low=0.0)
        self.arc_unlabeled_weight = check_finite(
            "arc_unlabeled_weight", arc_unlabeled_weight, low=0.0
        )
        self.confidence_threshold = check_finite(
            "confidence_threshold", confidence_threshold, low=0.5, high=1.0
        )
        self.rda = bool(rda)
        if int(rda_period) < 1:
            raise ValueError(f"rda_period must be >= 1, got {rda_period}.")
        self.rda_period = int(rda_period)
        if num_unlabeled is not None and int(num_unlabeled) < 1:
            raise ValueError(f"num_unlabeled must be >= 1, got {num_unlabeled}.")
        self.num_unlabeled = None if num_unlabeled is None else int(num_unlabeled)
        if not self.rda:
            self.loss_trackers.pop("unlabeled_loss")
        # No bias: it cancels in the pair logits a_j - a_i.
        self.arc_classifier = keras.layers.Dense(
            2, use_bias=False, name="arc_classifier"
        )
        self._targets_set = False

    def build_method(self, input_shape):
        self.arc_classifier.build(
            self.regressor.backbone.compute_output_shape(input_shape)
        )
        if not self.rda:
            return
        if self.num_unlabeled is None:
            raise ValueError(
                "RankUp's RDA keeps one pseudo-label per unlabeled row: pass "
                "num_unlabeled=<number of unlabeled rows> to its constructor "
                "(python -m trainers.run does), or rda=False."
            )
        # The reference starts the table at ones; rows not yet seen tie there.
        self.rda_raw = self._table("rda_raw", "ones")
        self.rda_aligned = self._table("rda_aligned", "zeros")
        self.rda_quantiles = self._table("rda_quantiles", "zeros")

    def _table(self, name, initializer):
        return self.add_weight(
            name=name,
            shape=(self.num_unlabeled,),
            initializer=initializer,
            trainable=False,
            aggregation="none",  # every replica writes the gathered rows itself
        )

    def variable_groups(self):
        """One group: the regressor and the ARC head, the compiled optimizer."""
        weights = self.regressor.trainable_weights
        weights = weights + self.arc_classifier.trainable_weights
        return {"regressor": VariableGroup(weights, self.optimizer)}

    def prepare(self, context):
        """RDA: the labeled targets' quantiles from the run's labeled rows."""
        if self.rda:
            self.set_labeled_targets(context.labeled[1])

    def set_labeled_targets(self, targets):
        """Sets RDA's target distribution: the (standardised) labeled targets."""
        self.rda_quantiles.assign(rda_quantiles(targets, self.num_unlabeled))
        self._targets_set = True

    def compute_losses(self, batch):
        x_l, y_l = batch["labeled"]
        x_weak, x_strong = batch["unlabeled"]
        f_l = self.regressor.features(x_l, training=True)
        y_pred = self.regressor.head(f_l)
        terms = {"labeled_loss": mse(y_l, y_pred), "labeled_predictions": y_pred}
        f_weak = self.regressor.features(x_weak, training=True)
        f_strong = self.regressor.features(x_strong, training=True)
        y_l = keras.ops.cast(keras.ops.reshape(y_l, (-1,)), y_pred.dtype)
        terms["arc_labeled_loss"] = arc_labeled_loss(
            gather_rows(self.arc_classifier(f_l)), gather_rows(y_l)
        )
        weak = keras.ops.stop_gradient(self.arc_classifier(f_weak))
        terms["arc_unlabeled_loss"], terms["arc_mask_rate"] = arc_unlabeled_loss(
            gather_rows(weak),
            gather_rows(self.arc_classifier(f_strong)),
            self.confidence_threshold,
        )
        arc = terms["arc_labeled_loss"] + (
            self.arc_unlabeled_weight * terms["arc_unlabeled_loss"]
        )
        terms["loss"] = terms["labeled_loss"] + self.arc_weight * arc
        if self.rda:
            prediction = self.regressor.head(f_weak)[:, 0]
            terms["unlabeled_loss"] = self.rda_loss(batch, prediction)
            terms["unlabeled_predictions"] = keras.ops.stop_gradient(prediction)
            terms["loss"] += self.unlabeled_weight_now() * terms["unlabeled_loss"]
        return terms

    def rda_loss(self, batch, prediction):
        """MSE of the weak-view predictions to their aligned pseudo-labels,
        0 before the first alignment (step < `rda_period`)."""
        if not self._targets_set:
            raise RuntimeError(
                "RankUp's RDA needs the labeled targets' distribution: call "
                "model.prepare(run_context) or model.set_labeled_targets(y) "
                "(standardised labeled targets) before fit, or use rda=False."
            )
        aligned = keras.ops.take(self.rda_aligned, batch["unlabeled_index"])
        active = keras.ops.cast(
            keras.ops.greater_equal(self.optimizer.iterations, self.rda_period),
            prediction.dtype,
        )
        return active * keras.ops.mean((prediction - aligned) ** 2)

    def compute_gradients(self, batch):
        """The gradients, then RDA's table: this step's weak-view predictions
        are written, and every `rda_period` steps the table is re-aligned."""
        grads, terms = super().compute_gradients(batch)
        if self.rda:
            predictions = terms.pop("unlabeled_predictions")
            scatter_rows([self.rda_raw], batch["unlabeled_index"], [predictions])
            due = keras.ops.equal((self.optimizer.iterations + 1) % self.rda_period, 0)
            tf.cond(due, self._align, lambda: tf.no_op())
        return grads, terms

    def _align(self):
        """RDA: the table entry of rank k gets the labeled quantile k/(N-1)."""
        aligned = rda_align(self.rda_raw, self.rda_quantiles)
        self.rda_aligned.assign(aligned)
        return tf.no_op()

    def get_config(self):
        config = super().get_config()
        config.update(
            arc_weight=self.arc_weight,
            arc_unlabeled_weight=self.arc_unlabeled_weight,
            confidence_threshold=self.confidence_threshold,
            rda=self.rda,
            rda_period=self.rda_period,
            num_unlabeled=self.num_unlabeled,
        )
        return config


def pair_margins(logits):
    """`(B, 2)` ARC logits -> `(B, B)` pair margins `d_ij`.

    The pair (i, j) has logits `a_j - a_i`; its class-0 ("y_j > y_i")
    probability is `softmax(a_j - a_i)_0 = sigmoid(d_ij)` with `d_ij = s_j -
    s_i`, `s = a_0 - a_1`. Working with the margins is the two-class softmax
    without its `(B, B, 2)` tensors.
    """
    scores = logits[:, 0] - logits[:, 1]
    return scores[None, :] - scores[:, None]


def pair_targets(targets):
    """`(B,)` targets -> `(B, B)` soft labels `(1 + sign(y_j - y_i)) / 2` of
    class 0 ("y_j > y_i") for the pair (i, j)."""
    return (1.0 + keras.ops.sign(targets[None, :] - targets[:, None])) / 2.0


def arc_labeled_loss(logits, targets):
    """Mean cross-entropy of all labeled pairs against their soft labels:
    `t CE(class 0) + (1 - t) CE(class 1) = t softplus(-d) + (1 - t) softplus(d)`.

    Example:

    >>> import numpy as np
    >>> loss = arc_labeled_loss(np.zeros((2, 2), "float32"), np.array([0.0, 1.0]))
    >>> round(float(loss), 4)  # every pair at p = 1/2: log 2
    0.6931
    """
    margins = pair_margins(keras.ops.convert_to_tensor(logits))
    t = keras.ops.cast(pair_targets(targets), margins.dtype)
    softplus = keras.ops.softplus
    return keras.ops.mean(t * softplus(-margins) + (1.0 - t) * softplus(margins))


def arc_unlabeled_loss(weak_logits, strong_logits, threshold):
    """FixMatch on unlabeled pairs: `(mean_pairs(mask * CE), mask rate)`.

    The weak view's pair probabilities give hard labels (argmax; a tie at
    1/2 is class 0) and the mask `max p >= threshold`; the strong view's pair
    logits are trained on them.
    """
    weak = pair_margins(keras.ops.convert_to_tensor(weak_logits))
    p = keras.ops.sigmoid(weak)
    mask = keras.ops.cast(keras.ops.maximum(p, 1.0 - p) >= threshold, weak.dtype)
    strong = pair_margins(keras.ops.convert_to_tensor(strong_logits))
    cross_entropy = keras.ops.where(
        weak >= 0, keras.ops.softplus(-strong), keras.ops.softplus(strong)
    )
    return keras.ops.mean(cross_entropy * mask), keras.ops.mean(mask)


def rda_quantiles(targets, num_rows):
    """The labeled targets' quantiles at k / (num_rows - 1), k = 0..N-1.

    Sorted labeled targets are placed at evenly spaced cumulative levels in
    [0, 1] and interpolated linearly (the reference's `np.interp`); entry k is
    the aligned pseudo-label of the unlabeled row of rank k.

    Example:

    >>> rda_quantiles([3.0, 1.0, 2.0], 5).tolist()
    [1.0, 1.5, 2.0, 2.5, 3.0]
    """
    targets = np.sort(np.asarray(targets, dtype="float64").reshape(-1))
    if targets.size == 0:
        raise ValueError("RDA needs at least one labeled target.")
    levels = np.linspace(0.0, 1.0, int(num_rows))
    return np.interp(levels, np.linspace(0.0, 1.0, targets.size), targets)


def rda_align(pseudo_labels, quantiles):
    """RDA: each pseudo-label replaced by the quantile of its rank.

    Example:

    >>> aligned = rda_align(tf.constant([0.3, -1.0, 5.0]), tf.constant([1.0, 2.0, 3.0]))
    >>> aligned.numpy().tolist()
    [2.0, 1.0, 3.0]
    """
    order = tf.argsort(pseudo_labels, stable=True)  # ties: by row
    return tf.scatter_nd(
        order[:, None],
        keras.ops.cast(quantiles, pseudo_labels.dtype),
        keras.ops.shape(pseudo_labels),
    )
