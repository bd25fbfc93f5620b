"""`CLSS`: contrastive regression with ordinal rankings of the unlabeled batch
recovered by spectral seriation."""

import dataclasses

import keras
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.ssr_model import SSRModel, check_finite, mse, num_replicas


@dataclasses.dataclass
class CLSSConfig(ConfigSection):
    """CLSS's constructor arguments (see `CLSS`), with their sources."""

    name = "clss"
    title = "CLSS (method clss)"

    labeled_contrastive_weight: float = option(
        1.0,
        "weight of the ordinal-entropy contrastive loss on the labeled features",
        flag="--clss-labeled-weight",
        source="reference code w_ctr = 1 (AgeDB-DIR, IXI scripts)",
    )
    unlabeled_contrastive_weight: float = option(
        0.05,
        "weight of the feature ranking loss against the seriation order",
        flag="--clss-unlabeled-weight",
        source="reference code w_ctrulb_0 = 0.05 (AgeDB-DIR, IXI scripts)",
    )
    ranking_weight: float = option(
        0.01,
        "weight of the prediction ranking loss against the seriation order",
        flag="--clss-ranking-weight",
        source="reference code w_ctrulb_1 = 0.01 (AgeDB-DIR, IXI scripts)",
    )
    interpolation: float = option(
        2.0,
        "lambda of the blackbox ranking gradient",
        flag="--clss-lambda",
        source="reference code lambda_val = 2 (from RankSim)",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class CLSS(SSRModel):
    """Contrastive learning with spectral seriation (CLSS).

    With features f = backbone(x) and standardised targets, per batch:

    - labeled: MSE + `labeled_contrastive_weight` * the ordinal-entropy
      contrastive loss of the labeled features and targets (`ordinal_entropy`:
      feature centres of different targets pushed apart in proportion to the
      target distance, features pulled to their target's centre), as the
      authors' code;
    - unlabeled (the weak view): the cosine similarity matrix S of the
      features is seriated (`spectral_seriation`: the Fiedler vector of the
      Laplacian L = diag(S 1) - S on the complement of the ones vector,
      sorted), giving each example a position rho_i; two ranking losses
      (`ranking_loss`) then ask, for every anchor i, that the ranks of its
      similarities match the ranks of the closeness -|rho_i - rho_j| in that
      order: the features' cosine similarities S_ij (the contrastive loss on
      unlabeled data, weight `unlabeled_contrastive_weight`) and the
      predictions' closeness -|yhat_i - yhat_j| (the ranking consistency,
      weight `ranking_weight`);
    - ranks are differentiated as a blackbox combinatorial solver
      (`blackbox_rank`, interpolation `interpolation`), as RankSim and the
      authors' code.

    The seriation and every loss over pairs use the whole global batch: under
    `tf.distribute` the features, targets and predictions are all-gathered,
    each replica computes the same global loss, and the gradient of the
    all-gather sums the replicas' contributions (so the step equals the
    one-device step).

    Args:
        regressor: the `SSRRegressor` to train (what is exported).
        labeled_contrastive_weight: weight of `ordinal_entropy`.
        unlabeled_contrastive_weight: weight of the feature ranking loss.
        ranking_weight: weight of the prediction ranking loss.
        interpolation: lambda > 0 of the blackbox ranking gradient.
        **kwargs: `SSRModel` arguments (`unlabeled_weight`, `rampup_steps`
            are not used: the weights above are CLSS's own).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = CLSS(SSRRegressor(MLPBackbone((8,))))

    References:
        Dai, Wang, Li et al., Semi-Supervised Contrastive Learning for Deep
        Regression with Ordinal Rankings from Spectral Seriation, NeurIPS 2023
        (code: github.com/xmed-lab/CLSS). Zhang et al., Improving Deep
        Regression with Ordinal Entropy, ICLR 2023. Gong et al., RankSim,
        ICML 2022. Atkins, Boman and Hendrickson, A spectral algorithm for
        seriation and the consecutive ones problem, SIAM J. Comput. 1998.
    """

    config_sections = (CLSSConfig,)
    loss_terms = (
        "loss",
        "labeled_loss",
        "labeled_contrastive",
        "unlabeled_contrastive",
        "unlabeled_ranking",
    )

    def __init__(
        self,
        regressor,
        labeled_contrastive_weight=1.0,
        unlabeled_contrastive_weight=0.05,
        ranking_weight=0.01,
        interpolation=2.0,
        **kwargs,
    ):
        super().__init__(regressor, **kwargs)
        self.labeled_contrastive_weight = check_finite(
            "labeled_contrastive_weight", labeled_contrastive_weight, low=0.0
        )
        self.unlabeled_contrastive_weight = check_finite(
            "unlabeled_contrastive_weight", unlabeled_contrastive_weight, low=0.0
        )
        self.ranking_weight = check_finite("ranking_weight", ranking_weight, low=0.0)
        self.interpolation = check_finite(
            "interpolation", interpolation, low=0.0, low_open=True
        )

    def compute_losses(self, batch):
        x_l, y_l = batch["labeled"]
        x_u = batch["unlabeled"][0]
        features_l = self.regressor.features(x_l, training=True)
        predictions_l = self.regressor.head(features_l)
        features_u = self.regressor.features(x_u, training=True)
        predictions_u = self.regressor.head(features_u)
        terms = {
            "labeled_loss": mse(y_l, predictions_l),
            "labeled_predictions": predictions_l,
            "labeled_contrastive": ordinal_entropy(
                all_gather(features_l), all_gather(y_l)
            ),
        }
        features_u = all_gather(features_u)
        similarity = cosine_similarity(features_u)
        order = spectral_seriation(keras.ops.stop_gradient(similarity))
        target = closeness_ranks(order, similarity.dtype)
        lam = self.interpolation
        terms["unlabeled_contrastive"] = ranking_loss(similarity, target, lam)
        predictions_u = keras.ops.reshape(all_gather(predictions_u), (-1, 1))
        closeness = -keras.ops.abs(predictions_u - keras.ops.transpose(predictions_u))
        terms["unlabeled_ranking"] = ranking_loss(closeness, target, lam)
        terms["loss"] = (
            terms["labeled_loss"]
            + self.labeled_contrastive_weight * terms["labeled_contrastive"]
            + self.unlabeled_contrastive_weight * terms["unlabeled_contrastive"]
            + self.ranking_weight * terms["unlabeled_ranking"]
        )
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(
            labeled_contrastive_weight=self.labeled_contrastive_weight,
            unlabeled_contrastive_weight=self.unlabeled_contrastive_weight,
            ranking_weight=self.ranking_weight,
            interpolation=self.interpolation,
        )
        return config


def all_gather(x):
    """`x` of every replica concatenated along the batch axis (in replica
    order, i.e. the global batch); `x` itself without a strategy. Its gradient
    sums the replicas' upstream gradients."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_gather(x, axis=0)


def l2_normalize(x):
    """`x / max(||x||, 1e-12)` per row, with a finite gradient at 0."""
    squared = keras.ops.sum(keras.ops.square(x), axis=-1, keepdims=True)
    return x / keras.ops.sqrt(keras.ops.maximum(squared, 1e-24))


def cosine_similarity(features):
    """`S_ij = <f_i, f_j> / (||f_i|| ||f_j||)` of the rows of `features`."""
    unit = l2_normalize(features)
    return keras.ops.matmul(unit, keras.ops.transpose(unit))


def spectral_seriation(similarity):
    """Position of each row in the spectral order of a similarity matrix.

    The Fiedler vector r of the graph Laplacian L = diag(S 1) - S: the
    eigenvector of the smallest eigenvalue of L restricted to the complement
    of the ones vector (where L's eigenvector 1 lies; computed as Z^T L Z
    with Z an orthonormal basis of that complement, so that negative
    similarities do not matter). Sorting r orders the rows so that similar
    rows are adjacent (Atkins et al. 1998); the order is defined up to
    reversal.

    Args:
        similarity: symmetric `(n, n)` similarities, n >= 2 (no gradient).

    Returns:
        int32 `(n,)`: the position rho_i of row i in the sorted Fiedler vector.
    """
    similarity = tf.convert_to_tensor(similarity)
    laplacian = tf.linalg.diag(tf.reduce_sum(similarity, axis=1)) - similarity
    basis = _ones_complement_basis(tf.shape(similarity)[0], similarity.dtype)
    _, vectors = tf.linalg.eigh(
        tf.matmul(basis, tf.matmul(laplacian, basis), transpose_a=True)
    )
    fiedler = tf.linalg.matvec(basis, vectors[:, 0])
    return tf.argsort(tf.argsort(fiedler, stable=True), stable=True)


def _ones_complement_basis(n, dtype):
    """An orthonormal basis `(n, n - 1)` of the vectors orthogonal to ones:
    the last n - 1 columns of the Householder reflection that maps e_1 to
    ones / sqrt(n) (its first column)."""
    e1 = tf.one_hot(0, n, dtype=dtype)
    v = e1 - tf.ones([n], dtype) / tf.sqrt(tf.cast(n, dtype))
    reflection = tf.eye(n, dtype=dtype) - 2.0 * tf.math.divide_no_nan(
        tf.tensordot(v, v, axes=0), tf.tensordot(v, v, axes=1)
    )
    return reflection[:, 1:]


def normalised_rank(scores):
    """Descending rank of each entry within its row of a matrix, in (0, 1]:
    the largest score of a row gets 1/n, the smallest 1; ties keep the column
    order (`top_k` puts the lower index first)."""
    n = tf.shape(scores)[-1]
    order = tf.math.top_k(scores, k=n).indices  # a stable descending sort
    rows = tf.broadcast_to(tf.range(tf.shape(scores)[0])[:, None], tf.shape(order))
    positions = tf.broadcast_to(tf.range(1, n + 1), tf.shape(order))
    rank = tf.scatter_nd(tf.stack([rows, order], -1), positions, tf.shape(order))
    return tf.cast(rank, scores.dtype) / tf.cast(n, scores.dtype)


def blackbox_rank(scores, interpolation):
    """`normalised_rank(scores)`, differentiated as a blackbox solver.

    The gradient of a loss with upstream gradient g is
    `-(rank(s) - rank(s + lambda g)) / lambda` (Vlastelica et al. 2020, as
    RankSim and the CLSS code with lambda = `interpolation`). It is not
    linear in g: under `tf.distribute` the upstream gradient arrives divided
    by the number of replicas R (`SSRModel`'s loss scaling), so the scores
    are perturbed by `lambda R g` and the result divided by R, which is the
    one-device gradient once the replicas' gradients are summed.
    """
    lam = float(interpolation)

    @tf.custom_gradient
    def rank(s):
        ranks = normalised_rank(s)

        def grad(upstream):
            replicas = float(num_replicas())
            shifted = normalised_rank(s + lam * replicas * upstream)
            return -(ranks - shifted) / (lam + 1e-8) / replicas

        return ranks, grad

    return rank(scores)


def closeness_ranks(order, dtype):
    """Target ranks of the seriation: row i ranks every j by -|rho_i - rho_j|."""
    position = tf.cast(order, dtype)
    closeness = -tf.abs(position[:, None] - position[None, :])
    return normalised_rank(closeness)


def ranking_loss(similarity, target_ranks, interpolation):
    """Sum over anchors i of `mean_j (rank(S_i)_j - target_ij)^2`.

    The ranks of each row of `similarity` (`blackbox_rank`) are matched to
    `target_ranks` (e.g. `closeness_ranks` of the seriation), as RankSim;
    summed over the anchors as the CLSS code (so the loss, and the
    perturbation of the blackbox gradient, grow with the batch).
    """
    ranks = blackbox_rank(similarity, interpolation)
    squared = keras.ops.square(ranks - keras.ops.stop_gradient(target_ranks))
    return keras.ops.sum(keras.ops.mean(squared, axis=1))


def ordinal_entropy(features, targets):
    """Ordinal-entropy contrastive loss: tightness minus weighted diversity.

    For the distinct targets u_a of the batch, with c_a the mean feature of
    the rows with target u_a and p_a = c_a / ||c_a||:
    `diversity = mean_{a<b} w_ab ||p_a - p_b||` with
    `w_ab = (|u_a - u_b| - min) / max` over the pairs, and
    `tightness = mean_i ||f_i / ||f_i|| - p_{a(i)}||^2` over the rows whose
    target is shared with another row (a row alone with its target is its own
    centre); the loss is `tightness - diversity`. Computed with masks over
    the rows (the first row of each target stands for it), so shapes stay
    static (XLA).

    Args:
        features: `(n, d)` features.
        targets: `(n,)` or `(n, 1)` targets (compared exactly).

    References:
        Zhang et al., Improving Deep Regression with Ordinal Entropy, ICLR 2023.
    """
    dtype = features.dtype
    y = keras.ops.reshape(keras.ops.cast(targets, dtype), (-1,))
    same = keras.ops.cast(keras.ops.equal(y[:, None], y[None, :]), dtype)
    counts = keras.ops.sum(same, axis=1)
    centres = l2_normalize(keras.ops.matmul(same, features) / counts[:, None])
    n = keras.ops.shape(y)[0]
    rows = keras.ops.arange(n)
    before = keras.ops.cast(rows[None, :] < rows[:, None], dtype)
    first = keras.ops.sum(same * before, axis=1) == 0
    pairs = first[:, None] & first[None, :] & (rows[:, None] < rows[None, :])
    distance = _pairwise_distance(centres)
    gap = keras.ops.abs(y[:, None] - y[None, :])
    any_pair = keras.ops.any(pairs)
    low = keras.ops.where(
        any_pair, keras.ops.min(keras.ops.where(pairs, gap, 1e30)), 0.0
    )
    high = keras.ops.where(
        any_pair, keras.ops.max(keras.ops.where(pairs, gap, -1.0)), 1.0
    )
    weight = keras.ops.where(pairs, (gap - low) / high, 0.0)
    diversity = _masked_mean(distance * weight, pairs)
    unit = l2_normalize(features)
    tightness = keras.ops.sum(keras.ops.square(unit - centres), axis=1)
    tight = _masked_mean(tightness, (counts > 1) & (tightness > 0))
    return tight - diversity


def _pairwise_distance(x):
    """Euclidean distances of the rows of `x`, floored at 1e-6 (finite grads)."""
    squared = keras.ops.sum(keras.ops.square(x), axis=1)
    gram = keras.ops.matmul(x, keras.ops.transpose(x))
    d2 = squared[:, None] + squared[None, :] - 2.0 * gram
    return keras.ops.sqrt(keras.ops.maximum(d2, 1e-12))


def _masked_mean(values, mask):
    """Mean of `values` where `mask`, 0 when the mask is empty."""
    mask = keras.ops.cast(mask, values.dtype)
    return keras.ops.divide_no_nan(keras.ops.sum(values * mask), keras.ops.sum(mask))
