import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.clss import (
    CLSS,
    all_gather,
    blackbox_rank,
    closeness_ranks,
    cosine_similarity,
    ordinal_entropy,
    ranking_loss,
    spectral_seriation,
)
from tests.helpers import compiled, linear_problem, make_batch, make_regressor
from trainers.run import main

# ---- NumPy references (the constructions of the CLSS code, written anew) ----


def np_rank(scores):
    """Descending rank in (0, 1] per row; ties in column order."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranks = np.argsort(order, axis=-1, kind="stable") + 1
    return ranks / scores.shape[-1]


def np_seriation(similarity):
    """Fiedler order with the complement basis from the centering matrix's
    eigenvectors (as the reference code), not a Householder reflection."""
    n = len(similarity)
    values, vectors = np.linalg.eigh(np.eye(n) - np.ones((n, n)) / n)
    basis = vectors[:, np.argsort(-values)][:, : n - 1]
    laplacian = np.diag(similarity.sum(1)) - similarity
    _, v = np.linalg.eigh(basis.T @ laplacian @ basis)
    return np.argsort(np.argsort(basis @ v[:, 0]))


def np_closeness(order):
    return np_rank(-np.abs(order[:, None] - order[None, :]).astype(float))


def np_ranking_loss(ranks, target):
    """Sum over anchors (rows) of the mean squared rank difference."""
    return np.sum(np.mean((ranks - target) ** 2, axis=1))


def np_ordinal_entropy(features, targets):
    """Zhang et al.'s loss with np.unique, as the reference code."""
    values, index = np.unique(targets, return_inverse=True)
    centres = np.stack([features[index == a].mean(0) for a in range(len(values))])
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # noqa: E731
    p = unit(centres)
    upper = np.triu(np.ones((len(values),) * 2, bool), k=1)
    distance = np.linalg.norm(p[:, None] - p[None, :], axis=-1)[upper]
    weight = np.abs(values[:, None] - values[None, :])[upper]
    weight = (weight - weight.min()) / weight.max()
    diversity = np.mean(distance * weight)
    tightness = np.sum((unit(features) - p[index]) ** 2, axis=1)
    tightness = tightness[tightness > 0]
    # All targets distinct: the reference's mean over no rows is NaN; 0 here.
    return (tightness.mean() if len(tightness) else 0.0) - diversity


def kendall_tau(a, b):
    sa = np.sign(a[:, None] - a[None, :])
    sb = np.sign(b[:, None] - b[None, :])
    upper = np.triu(np.ones((len(a),) * 2, bool), k=1)
    return np.sum(sa[upper] * sb[upper]) / upper.sum()


# ---- spectral seriation ----


def _shuffled_band(n, scale, noise, seed):
    rng = np.random.default_rng(seed)
    position = rng.permutation(n)
    similarity = np.exp(-np.abs(position[:, None] - position[None, :]) / scale)
    e = noise * rng.normal(size=(n, n))
    return position, similarity + (e + e.T) / 2


def test_seriation_recovers_a_shuffled_order_up_to_reversal():
    position, similarity = _shuffled_band(40, 4.0, 1e-3, seed=0)
    order = spectral_seriation(tf.constant(similarity)).numpy()
    assert sorted(order) == list(range(40))
    assert np.array_equal(order, position) or np.array_equal(order, 39 - position)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seriation_of_a_noisy_band_keeps_kendall_tau_above_095(seed):
    position, similarity = _shuffled_band(60, 5.0, 0.05, seed)
    order = spectral_seriation(tf.constant(similarity)).numpy()
    assert abs(kendall_tau(order, position)) > 0.95


def test_seriation_matches_the_reference_construction():
    features = np.random.default_rng(4).normal(size=(30, 6))
    similarity = cosine_similarity(tf.constant(features)).numpy()
    ours = spectral_seriation(tf.constant(similarity)).numpy()
    reference = np_seriation(similarity)
    assert np.array_equal(ours, reference) or np.array_equal(ours, 29 - reference)


def test_seriation_of_cosine_similarities_orders_points_on_an_arc():
    rng = np.random.default_rng(5)
    angle = rng.uniform(0, np.pi / 2, size=25)
    features = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    features = np.concatenate([features, 0.01 * rng.normal(size=(25, 3))], axis=1)
    order = spectral_seriation(cosine_similarity(tf.constant(features))).numpy()
    truth = np.argsort(np.argsort(angle))
    assert np.array_equal(order, truth) or np.array_equal(order, 24 - truth)


# ---- ranking (contrastive) losses ----


def test_closeness_ranks_match_numpy_with_ties():
    order = np.array([2, 0, 4, 1, 3])
    got = closeness_ranks(tf.constant(order), tf.float64).numpy()
    np.testing.assert_allclose(got, np_closeness(order))
    assert np.all(np.diag(got) == 1 / 5)  # every row ranks itself first


def test_ranking_loss_and_its_blackbox_gradient_match_numpy():
    rng = np.random.default_rng(6)
    n, lam = 7, 2.0
    similarity = tf.constant(0.2 * rng.normal(size=(n, n)))  # close: ranks flip
    order = rng.permutation(n)
    target = np_closeness(order)
    with tf.GradientTape() as tape:
        tape.watch(similarity)
        loss = ranking_loss(similarity, tf.constant(target), lam)
    grad = tape.gradient(loss, similarity).numpy()
    ranks = np_rank(similarity.numpy())
    # Summed over the anchors (rows), each row a mean over j.
    np.testing.assert_allclose(loss, np.sum(np.mean((ranks - target) ** 2, axis=1)))
    upstream = 2 * (ranks - target) / n  # d loss / d ranks
    shifted = np_rank(similarity.numpy() + lam * upstream)
    np.testing.assert_allclose(grad, -(ranks - shifted) / (lam + 1e-8))
    assert np.abs(grad).max() > 0


def _ranking_gradient(features, order):
    """d ranking_loss(cosine similarity of the global features) / d features,
    with the loss scaled by 1 / replicas as `SSRModel.compute_gradients`."""
    with tf.GradientTape() as tape:
        tape.watch(features)
        similarity = cosine_similarity(all_gather(features))
        loss = ranking_loss(similarity, closeness_ranks(order, features.dtype), 2.0)
        loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
    return tape.gradient(loss, features)


def test_ranking_gradient_under_two_replicas_equals_one_device(two_device_strategy):
    """The all-gather sums the replicas' gradients and the blackbox step
    perturbs the scores as on one device (not by g / replicas)."""
    rng = np.random.default_rng(8)
    features = rng.normal(size=(16, 4)).astype("float32")
    order = tf.constant(rng.permutation(16))
    expected = _ranking_gradient(tf.constant(features), order).numpy()
    assert np.abs(expected).max() > 0
    dataset = two_device_strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(features)
    )
    local = two_device_strategy.run(
        tf.function(lambda f: _ranking_gradient(f, order)),
        args=(next(iter(dataset)),),
    )
    got = np.concatenate([g.numpy() for g in local.values])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_blackbox_rank_forward_is_the_descending_rank():
    scores = tf.constant([[0.3, 0.9, -1.0, 0.5]])
    np.testing.assert_allclose(blackbox_rank(scores, 2.0), [[0.75, 0.25, 1.0, 0.5]])


@pytest.mark.parametrize("targets", [[0.5, 1, 1, 2, 0.5, 3, 1, -1], np.arange(8.0)])
def test_ordinal_entropy_matches_numpy(targets):
    features = np.random.default_rng(7).normal(size=(8, 5))
    targets = np.asarray(targets, float)
    got = ordinal_entropy(tf.constant(features), tf.constant(targets))
    np.testing.assert_allclose(got, np_ordinal_entropy(features, targets), rtol=1e-10)


def test_ordinal_entropy_is_finite_with_one_target_and_zero_features():
    features = tf.Variable(np.zeros((4, 3)))
    with tf.GradientTape() as tape:
        loss = ordinal_entropy(features, tf.constant([1.0, 1.0, 1.0, 1.0]))
    assert float(loss) == 0.0
    assert np.all(np.isfinite(tape.gradient(loss, features).numpy()))


# ---- the method ----


def test_compute_losses_match_numpy():
    x, y = linear_problem()
    batch = make_batch(x, y)
    model = compiled(CLSS, make_regressor(), ranking_weight=0.3)
    terms = model.compute_losses(batch)
    x_l, y_l = (t.numpy() for t in batch["labeled"])
    x_u = batch["unlabeled"][0].numpy()
    f_l = model.regressor.features(x_l, training=True).numpy()
    f_u = model.regressor.features(x_u, training=True).numpy()
    pred_l = model.regressor.head(f_l).numpy()[:, 0]
    pred_u = model.regressor.head(f_u).numpy()[:, 0]
    unit = f_u / np.linalg.norm(f_u, axis=1, keepdims=True)
    similarity = unit @ unit.T
    target = np_closeness(np_seriation(similarity))
    expected = {
        "labeled_loss": np.mean((y_l - pred_l) ** 2),
        "labeled_contrastive": np_ordinal_entropy(f_l, y_l),
        "unlabeled_contrastive": np_ranking_loss(np_rank(similarity), target),
        "unlabeled_ranking": np_ranking_loss(
            np_rank(-np.abs(pred_u[:, None] - pred_u[None, :])), target
        ),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(terms[name], value, rtol=1e-4, err_msg=name)
    total = (
        expected["labeled_loss"]
        + expected["labeled_contrastive"]
        + 0.05 * expected["unlabeled_contrastive"]
        + 0.3 * expected["unlabeled_ranking"]
    )
    np.testing.assert_allclose(terms["loss"], total, rtol=1e-4)


def _fit_weights(strategy, jit=False):
    keras.utils.set_random_seed(5)  # the same batch and initial weights
    x, y = linear_problem()
    ds = tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(2)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = compiled(CLSS, make_regressor(), optimizer=keras.optimizers.Adam(1e-2))
    model.compile(optimizer=model.optimizer, jit_compile=jit)
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
    return history, [w.numpy() for w in model.regressor.weights]


def test_mirrored_strategy_matches_one_device(two_device_strategy):
    """The seriation and the pair losses see the all-gathered global batch."""
    (h1, w1), (h2, w2) = (_fit_weights(s) for s in (None, two_device_strategy))
    for name in ("loss", "labeled_contrastive", "unlabeled_contrastive"):
        assert h1[name][0] == pytest.approx(h2[name][0], rel=1e-4)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_jit_compile_matches_graph():
    (_, w1), (_, w2) = (_fit_weights(None, jit) for jit in (False, True))
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_get_config_round_trip_and_bad_options():
    model = CLSS(
        make_regressor(),
        labeled_contrastive_weight=0.5,
        unlabeled_contrastive_weight=0.1,
        ranking_weight=0.2,
        interpolation=1.5,
    )
    clone = CLSS.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    with pytest.raises(ValueError, match="interpolation must be a finite number"):
        CLSS(make_regressor(), interpolation=0.0)
    with pytest.raises(ValueError, match="ranking_weight must be a finite number"):
        CLSS(make_regressor(), ranking_weight=-1.0)


def test_cli_trains_and_exports_a_servable_model(tmp_path):
    out, exp = str(tmp_path / "runs"), str(tmp_path / "sm")
    argv = [
        "--methods", "clss", "--epochs", "1", "--steps-per-epoch", "2",
        "--verbose", "0", "--clss-lambda", "1.5", "--unlabeled-batch-size", "32",
        "--output-dir", out, "--export-dir", exp, "--run-name", "c",
    ]  # fmt: skip
    assert main(argv) == 0
    served = tf.saved_model.load(os.path.join(exp, "c", "clss", "1"))
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    predictions = served.signatures["serving_default"](features=tf.constant(x))
    assert predictions["predictions"].shape == (5, 1)
    assert np.all(np.isfinite(predictions["predictions"].numpy()))
