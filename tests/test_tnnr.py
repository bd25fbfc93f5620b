import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.tnnr import TNNR, loop_residuals, pair_loss
from keras_ssr.models.pair_head import PairHead, anchor_ensemble, relu_sums
from tests.anchored_checks import (
    assert_replicas_and_xla_match,
    check_cli_exports_what_it_evaluated,
    check_served_equals_evaluate,
    trained,
)
from tests.helpers import batch64, linear_problem, make_regressor


def numpy_head(head):
    """F(a, b) = relu([a, b] W + c) w + d for one pair, from the head's weights."""
    w1, c, w2, d = (v.numpy().astype("float64") for v in head.weights)

    def pair(a, b):
        return float(np.maximum(np.concatenate([a, b]) @ w1 + c, 0) @ w2[:, 0] + d[0])

    return pair


def _head64(d=3, units=6, seed=0):
    keras.utils.set_random_seed(seed)
    head = PairHead(units, dtype="float64")
    head.build((None, d))
    for v in head.weights:  # non-zero biases too
        v.assign(np.random.default_rng(seed).normal(size=v.shape))
    return head


def test_pairs_and_loops_against_hand_enumeration(float64):
    rng = np.random.default_rng(1)
    h, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    head = _head64()
    f = numpy_head(head)
    pairs = head.pairwise(h, h).numpy()
    for i in range(5):
        for j in range(5):
            assert pairs[i, j] == pytest.approx(f(h[i], h[j]), rel=1e-12)
    expected = np.mean(
        [(f(h[i], h[j]) - (y[i] - y[j])) ** 2 for i in range(5) for j in range(5)]
    )
    assert float(pair_loss(pairs, y)) == pytest.approx(expected, rel=1e-12)
    loops = [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 0), (4, 0, 1)]
    residuals = [f(h[a], h[b]) + f(h[b], h[c]) + f(h[c], h[a]) for a, b, c in loops]
    np.testing.assert_allclose(loop_residuals(head, h), residuals, rtol=1e-12)


def test_step_loss_is_labeled_pairs_plus_lambda_loops(float64):
    model = TNNR(
        make_regressor(hidden=(3,), dtype="float64"),
        loop_weight=0.6,
        head_units=6,
        dtype="float64",
    )
    model.build((None, 3))
    batch = batch64(n_u=4)
    (x_l, y_l), (x_raw, x_strong) = batch["labeled"], batch["unlabeled"]
    terms = model.compute_losses(batch)
    f = numpy_head(model.pair_head)
    h_l, h_u = (model.regressor.features(x).numpy() for x in (x_l, x_raw))
    y = y_l.numpy()
    n, m = len(h_l), len(h_u)
    labeled = np.mean(
        [(f(h_l[i], h_l[j]) - (y[i] - y[j])) ** 2 for i in range(n) for j in range(n)]
    )
    loops = [
        f(h_u[k], h_u[(k + 1) % m])
        + f(h_u[(k + 1) % m], h_u[(k + 2) % m])
        + f(h_u[(k + 2) % m], h_u[k])
        for k in range(m)
    ]
    assert float(terms["labeled_loss"]) == pytest.approx(labeled, rel=1e-10)
    assert float(terms["unlabeled_loss"]) == pytest.approx(np.mean(np.square(loops)))
    assert float(terms["loss"]) == pytest.approx(
        labeled + 0.6 * np.mean(np.square(loops)), rel=1e-10
    )
    # The strong view is not used (the paper has no augmentation).
    other = dict(batch, unlabeled=(x_raw, x_strong + 100.0))
    assert float(model.compute_losses(other)["loss"]) == float(terms["loss"])


def test_loop_consistency_is_zero_for_consistent_differences(float64):
    rng = np.random.default_rng(2)
    h = rng.normal(size=(9, 3))

    def g(x):
        return tf.reduce_sum(tf.sin(3.0 * x), axis=1) + tf.reduce_sum(x**3, axis=1)

    def consistent(pair):  # F(a, b) = g(a) - g(b)
        return g(pair[0]) - g(pair[1])

    np.testing.assert_allclose(loop_residuals(consistent, h), 0.0, atol=1e-12)
    # A PairHead set by hand to F(a, b) = v.a - v.b: relu(z) - relu(-z) = z.
    v = rng.normal(size=3)
    head = PairHead(units=2, dtype="float64")
    head.build((None, 3))
    head.hidden.kernel.assign(np.stack([np.r_[v, -v], np.r_[-v, v]], axis=1))
    head.hidden.bias.assign(np.zeros(2))
    head.output_layer.kernel.assign([[1.0], [-1.0]])
    head.output_layer.bias.assign([0.0])
    np.testing.assert_allclose(head.pairwise(h, h), (h @ v)[:, None] - h @ v)
    np.testing.assert_allclose(loop_residuals(head, h), 0.0, atol=1e-12)
    assert np.abs(loop_residuals(_head64(), h)).min() > 1e-6  # not trivially zero


def test_anchor_ensemble_is_the_mean_over_explicit_pairs(float64):
    rng = np.random.default_rng(3)
    h_x, h_a, y_a = (
        rng.normal(size=(7, 3)),
        rng.normal(size=(11, 3)),
        rng.normal(size=11),
    )
    head = _head64()
    forward, backward = head.pairwise(h_x, h_a), head.pairwise(h_a, h_x)
    expected = np.mean(0.5 * forward - 0.5 * np.transpose(backward) + y_a, axis=1)
    got = anchor_ensemble(head, h_x, h_a, y_a)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-12)
    # Anchors of unknown static count (a text backbone's features) work too.
    spec = tf.TensorSpec((None, 3), "float64")
    traced = tf.function(
        lambda x, a: anchor_ensemble(head, x, a, y_a), input_signature=[spec, spec]
    )
    np.testing.assert_allclose(traced(h_x, h_a)[:, 0], expected, rtol=1e-12)
    # relu_sums on ties (q + b_k = 0) and all-negative / all-positive columns.
    queries = np.array([[1.0, -5.0, 5.0], [-0.5, 0.0, -1.0]])
    terms = np.array([[-1.0, 1.0, 2.0], [0.5, 2.0, -3.0], [0.5, -4.0, 0.0]])
    brute = np.maximum(queries[:, None, :] + terms[None, :, :], 0).sum(axis=1)
    np.testing.assert_allclose(relu_sums(queries, terms), brute, rtol=1e-15)


def test_prediction_is_the_symmetric_anchor_mean(tmp_path):
    model, x, y, _ = trained(TNNR)
    anchors = 60
    model.set_anchors(x[:anchors], y[:anchors])
    f = numpy_head(model.pair_head)
    h_a = model.regressor.features(x[:anchors]).numpy()
    h_x = model.regressor.features(x[200:210]).numpy()
    expected = [
        np.mean(
            [
                0.5 * f(h, h_k) - 0.5 * f(h_k, h) + y_k
                for h_k, y_k in zip(h_a, y[:anchors], strict=True)
            ]
        )
        for h in h_x
    ]
    predicted = model.predict(x[200:210], verbose=0)[:, 0]
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)
    check_served_equals_evaluate(model, x[200:], y[200:], str(tmp_path / "1"))


def test_num_anchors_keeps_a_fixed_subset():
    x, y = linear_problem(n=50)
    model = TNNR(make_regressor(), num_anchors=10)
    model.set_anchors(x, y)
    kept = model.anchors.x.numpy()
    assert len(model.anchors) == 10
    rows = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in kept]
    np.testing.assert_array_equal(model.anchors.y.numpy(), y[rows])
    with pytest.raises(ValueError, match="set_anchors"):
        TNNR(make_regressor()).call(x[:2])


def test_two_replicas_and_xla_match_one_device(two_device_strategy):
    assert_replicas_and_xla_match(TNNR, two_device_strategy)


def test_get_config_round_trip_and_bad_options():
    model = TNNR(make_regressor(), loop_weight=0.5, head_units=16, num_anchors=100)
    clone = TNNR.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.pair_head.units == 16
    with pytest.raises(ValueError, match="loop_weight must be a finite number"):
        TNNR(make_regressor(), loop_weight=float("nan"))
    with pytest.raises(ValueError, match="num_anchors must be >= 0"):
        TNNR(make_regressor(), num_anchors=-1)
    with pytest.raises(ValueError, match="units must be >= 1"):
        TNNR(make_regressor(), head_units=0)


def test_cli_exports_the_anchor_ensemble_it_evaluated(tmp_path):
    check_cli_exports_what_it_evaluated("tnnr", tmp_path, ["--tnnr-num-anchors", "64"])
