import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.rankup import (
    RankUp,
    arc_labeled_loss,
    arc_unlabeled_loss,
    rda_align,
    rda_quantiles,
)
from keras_ssr.methods.registry import get_method
from tests.helpers import (
    assert_cli_exports,
    assert_same_fit,
    cached,
    compiled,
    fit_state,
    linear_problem,
    make_batch,
    make_regressor,
    make_stream,
)


def _log_softmax(v):
    v = np.asarray(v, "float64")
    return v - np.log(np.sum(np.exp(v)))


def test_labeled_pair_loss_matches_hand_computation():
    logits = np.array([[0.5, -1.0], [2.0, 0.0], [-0.3, 0.4]])
    y = np.array([1.0, 3.0, 3.0])
    total = 0.0
    for i in range(3):
        for j in range(3):  # pair (i, j): logits a_j - a_i, class 0 = y_j > y_i
            t = 1.0 if y[j] > y[i] else 0.0 if y[j] < y[i] else 0.5
            log_p = _log_softmax(logits[j] - logits[i])
            total += -(t * log_p[0] + (1 - t) * log_p[1])
    assert float(arc_labeled_loss(logits, y)) == pytest.approx(total / 9, rel=1e-12)


def test_unlabeled_pair_loss_uses_confident_weak_pairs_as_hard_labels():
    weak = np.array([[3.0, 0.0], [0.0, 0.0], [0.2, 0.1]])
    strong = np.array([[1.0, 0.5], [-0.5, 0.2], [0.3, -0.4]])
    threshold = 0.9
    total, kept = 0.0, 0
    for i in range(3):
        for j in range(3):
            p = np.exp(_log_softmax(weak[j] - weak[i]))
            if p.max() >= threshold:  # sigmoid(3) = 0.953: only pairs with row 0
                kept += 1
                total += -_log_softmax(strong[j] - strong[i])[np.argmax(p)]
    assert kept == 4
    loss, rate = arc_unlabeled_loss(weak, strong, threshold)
    assert float(loss) == pytest.approx(total / 9, rel=1e-12)
    assert float(rate) == pytest.approx(kept / 9)
    assert float(arc_unlabeled_loss(weak, strong, 0.99)[0]) == 0.0


def test_rda_maps_pseudo_labels_onto_the_labeled_distribution():
    rng = np.random.default_rng(0)
    labels = rng.gamma(2.0, size=50)
    pseudo = rng.normal(size=50)  # N = n_l: the aligned values are the labels
    aligned = rda_align(tf.constant(pseudo), tf.constant(rda_quantiles(labels, 50)))
    ranks = np.argsort(np.argsort(pseudo))
    np.testing.assert_allclose(aligned, np.sort(labels)[ranks], rtol=1e-12)
    # N = 2 n_l - 1: the labels at even ranks, midpoints between them at odd.
    sorted_labels = np.sort(labels)
    midpoints = (sorted_labels[:-1] + sorted_labels[1:]) / 2
    expected = np.empty(99)
    expected[0::2], expected[1::2] = sorted_labels, midpoints
    np.testing.assert_allclose(rda_quantiles(labels, 99), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="at least one labeled target"):
        rda_quantiles([], 10)


def _rankup(**kwargs):
    x, y = linear_problem()
    model = compiled(RankUp, make_regressor(), num_unlabeled=len(x) - 32, **kwargs)
    model.set_labeled_targets(y[:32])
    return model, x, y


def test_rda_table_alignment_and_loss_follow_the_period():
    model, x, y = _rankup(rda_period=2, unlabeled_weight=1.0)
    batches = [make_batch(x, y, seed=s, unlabeled_index=True) for s in range(3)]
    raw = np.ones(len(x) - 32, "float32")  # the reference's initial table
    for step, batch in enumerate(batches):
        rows = batch["unlabeled_index"].numpy()
        prediction = model.regressor.standardized(batch["unlabeled"][0]).numpy()[:, 0]
        aligned = model.rda_aligned.numpy()
        # RDA's loss starts at step `rda_period`, on the labels aligned after
        # step rda_period - 1.
        expected = np.mean((prediction - aligned[rows]) ** 2) if step >= 2 else 0.0
        loss = model.compute_losses(batch)["unlabeled_loss"]
        assert float(loss) == pytest.approx(expected, rel=1e-5)
        model.train_step(batch)
        raw[rows] = prediction
        np.testing.assert_allclose(model.rda_raw.numpy(), raw, rtol=1e-5, atol=1e-6)
        if step == 0:
            assert not np.any(model.rda_aligned.numpy())  # not aligned yet
        if step == 1:  # aligned: the entry of rank k gets quantile k / (N - 1)
            ranks = np.argsort(np.argsort(model.rda_raw.numpy(), kind="stable"))
            quantiles = rda_quantiles(y[:32], len(raw))
            np.testing.assert_allclose(
                model.rda_aligned.numpy(), quantiles[ranks], rtol=1e-6
            )
    assert float(loss) > 0


def test_total_loss_combines_regression_rda_and_ranking_terms():
    model, x, y = _rankup(arc_weight=0.3, arc_unlabeled_weight=2.0, rda_period=1)
    model.optimizer.iterations.assign(5)
    model.unlabeled_weight = 0.7
    terms = model.compute_losses(make_batch(x, y, unlabeled_index=True))
    arc = terms["arc_labeled_loss"] + 2.0 * terms["arc_unlabeled_loss"]
    expected = terms["labeled_loss"] + 0.7 * terms["unlabeled_loss"] + 0.3 * arc
    assert float(terms["loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_rda_refuses_to_train_without_the_labeled_targets():
    x, y = linear_problem()
    model = compiled(RankUp, make_regressor(), num_unlabeled=len(x) - 32)
    with pytest.raises(RuntimeError, match="set_labeled_targets"):
        model.compute_losses(make_batch(x, y, unlabeled_index=True))


def test_without_rda_there_is_no_table_and_no_regression_pseudo_label_loss():
    x, y = linear_problem()
    model = compiled(get_method("rankup_no_rda"), make_regressor())
    assert not hasattr(model, "rda_raw") and "unlabeled_loss" not in model.metrics_names
    terms = model.compute_losses(make_batch(x, y))
    arc = terms["arc_labeled_loss"] + terms["arc_unlabeled_loss"]
    assert float(terms["loss"]) == pytest.approx(
        float(terms["labeled_loss"] + 0.2 * arc), rel=1e-6
    )
    grads = model.compute_gradients(make_batch(x, y))[0]["regressor"]
    assert len(grads) == len(model.regressor.trainable_weights) + 1  # + ARC kernel
    assert np.any(grads[-1].numpy() != 0)


def _fit_model():
    model = compiled(
        RankUp,
        make_regressor(),
        optimizer=keras.optimizers.Adam(1e-2),
        num_unlabeled=512 - 32,
        unlabeled_weight=1.0,
        confidence_threshold=0.6,
        rda_period=3,
    )
    model.set_labeled_targets(linear_problem()[1][:32])
    return model


def test_two_replicas_and_xla_match_one_device(two_device_strategy):
    """Pairs over the global batch (ARC logits gathered with gradients) and
    the RDA table written from gathered rows give the one-device run."""
    x, y = linear_problem()
    data = cached(list(make_stream(x, y, unlabeled_index=True).take(3))).repeat(2)
    one_device = fit_state(_fit_model, data)
    history = one_device[0]
    assert history["unlabeled_loss"][0] > 0 and history["arc_mask_rate"][0] > 0
    assert_same_fit(one_device, fit_state(_fit_model, data, two_device_strategy))
    assert_same_fit(one_device, fit_state(_fit_model, data, jit_compile=True))


def test_get_config_round_trip_and_bad_options():
    model = RankUp(
        make_regressor(),
        arc_weight=0.5,
        confidence_threshold=0.8,
        rda=False,
        rda_period=7,
        num_unlabeled=11,
    )
    clone = RankUp.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    for kwargs, message in (
        ({"confidence_threshold": 0.3}, r"confidence_threshold must be a finite"),
        ({"rda_period": 0}, "rda_period must be >= 1"),
        ({"arc_weight": -1.0}, "arc_weight must be a finite number"),
        ({"num_unlabeled": 0}, "num_unlabeled must be >= 1"),
    ):
        with pytest.raises(ValueError, match=message):
            RankUp(make_regressor(), **kwargs)
    with pytest.raises(ValueError, match="pass num_unlabeled="):
        RankUp(make_regressor()).build((None, 4))


def test_cli_trains_and_exports_the_regressor_only(tmp_path):
    results = assert_cli_exports(
        tmp_path, ["rankup", "rankup_no_rda"], ["--rankup-rda-period", "1"]
    )
    assert results["config"]["methods"]["rankup"]["rda_period"] == 1
