import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.simregmatch import (
    SimRegMatch,
    calibrated_pseudo_labels,
    kept_mean,
    percentile,
)
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


def _numpy_pseudo_labels(mc, features, labeled_features, labels, t, beta):
    """SimRegMatch's calibration written out in NumPy (reference trainer)."""
    mean = mc.mean(axis=1)
    variance = mc.std(axis=1, ddof=1) ** 2  # torch.std is unbiased
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    unit_l = labeled_features / np.linalg.norm(labeled_features, axis=1, keepdims=True)
    logits = unit @ unit_l.T / t
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return beta * mean + (1 - beta) * weights @ labels, variance


@pytest.mark.parametrize("t, beta", [(1.0, 0.6), (0.1, 0.0), (2.0, 1.0)])
def test_calibration_matches_numpy(t, beta):
    rng = np.random.default_rng(0)
    mc = rng.normal(size=(7, 5))
    features, labeled = rng.normal(size=(7, 4)), rng.normal(size=(6, 4))
    labels = rng.normal(size=6)
    yhat, variance = calibrated_pseudo_labels(mc, features, labeled, labels, t, beta)
    expected = _numpy_pseudo_labels(mc, features, labeled, labels, t, beta)
    np.testing.assert_allclose(yhat, expected[0], rtol=1e-6)
    np.testing.assert_allclose(variance, expected[1], rtol=1e-6)


def test_percentile_matches_numpy():
    for size in (1, 2, 10, 64):
        values = np.random.default_rng(size).gamma(1.0, size=size)
        for q in (0.0, 0.95, 37.5, 95.0, 100.0):
            got = float(percentile(tf.constant(values), q))
            assert got == pytest.approx(np.percentile(values, q), rel=1e-9), (size, q)


def test_kept_mean_is_the_mean_over_kept_rows_and_zero_without_any():
    values = tf.constant([1.0, 2.0, 3.0, 10.0])
    assert float(kept_mean(values, tf.constant([1.0, 0.0, 1.0, 0.0]))) == 2.0
    assert float(kept_mean(values, tf.zeros(4))) == 0.0


def test_dropout_masks_rows_per_stream_and_rescales():
    model = compiled(SimRegMatch, make_regressor(), mc_dropout=0.25, seed=1)
    features = tf.ones((400, 16))
    first = model.dropout(features, 2).numpy()
    np.testing.assert_allclose(np.unique(first), [0.0, 1 / 0.75], rtol=1e-6)
    assert (first > 0).mean() == pytest.approx(0.75, abs=0.02)
    np.testing.assert_array_equal(first, model.dropout(features, 2))
    assert not np.array_equal(first, model.dropout(features, 3))


def test_train_step_filters_and_calibrates_as_the_reference():
    """One step against NumPy: the MC passes and the strong pass are taken
    from the model (same step, same masks); the calibration, the filter on
    the previous threshold, the kept mean and the new threshold are NumPy."""
    x, y = linear_problem()
    t, beta, q, lam = 0.5, 0.6, 60.0, 2.0
    model = compiled(
        SimRegMatch,
        make_regressor(),
        temperature=t,
        beta=beta,
        percentile=q,
        unlabeled_weight=lam,
        seed=4,
    )
    batch = make_batch(x, y)
    (x_l, y_l), (x_weak, x_strong) = batch["labeled"], batch["unlabeled"]
    f_l, f_w, f_s = (model.regressor.features(v) for v in (x_l, x_weak, x_strong))
    mc = model.mc_predictions(f_w).numpy()
    strong = model.head(f_s, 1).numpy()[:, 0]
    yhat, variance = _numpy_pseudo_labels(
        mc, f_w.numpy(), f_l.numpy(), y_l.numpy(), t, beta
    )
    model.threshold.assign(np.median(variance))  # "the previous step's" tau
    keep = variance < np.median(variance)
    expected = np.sum(keep * (yhat - strong) ** 2) / keep.sum()
    terms = model.compute_losses(batch)
    assert float(terms["unlabeled_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["kept_fraction"]) == pytest.approx(keep.mean())
    labeled = np.mean((model.head(f_l, 0).numpy()[:, 0] - y_l.numpy()) ** 2)
    assert float(terms["loss"]) == pytest.approx(labeled + lam * expected, rel=1e-5)
    model.train_step(batch)
    assert float(model.threshold) == pytest.approx(np.percentile(variance, q), 1e-5)


def test_first_step_keeps_every_row():
    x, y = linear_problem()
    model = compiled(SimRegMatch, make_regressor())
    assert float(model.compute_losses(make_batch(x, y))["kept_fraction"]) == 1.0


def _fit_model():
    return compiled(
        SimRegMatch,
        make_regressor(),
        optimizer=keras.optimizers.Adam(1e-2),
        unlabeled_weight=1.0,
        percentile=70.0,
        seed=11,
    )


def test_two_replicas_and_xla_match_one_device(two_device_strategy):
    """With real dropout: masks are drawn for the global batch, labeled
    features, variances and kept rows are gathered over the replicas."""
    x, y = linear_problem()
    data = cached(list(make_stream(x, y).take(3))).repeat(2)
    one_device = fit_state(_fit_model, data)
    assert 0 < one_device[0]["kept_fraction"][0] < 1
    assert_same_fit(one_device, fit_state(_fit_model, data, two_device_strategy))
    assert_same_fit(one_device, fit_state(_fit_model, data, jit_compile=True))


def test_get_config_round_trip_and_bad_options():
    model = SimRegMatch(
        make_regressor(), mc_passes=3, mc_dropout=0.2, percentile=0.95, seed=5
    )
    clone = SimRegMatch.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    for kwargs, message in (
        ({"mc_passes": 1}, "mc_passes must be >= 2"),
        ({"mc_dropout": 0.0}, r"mc_dropout must be in \(0, 1\)"),
        ({"percentile": 101}, r"percentile must be a finite number in \[0.0, 100"),
        ({"temperature": 0.0}, r"temperature must be a finite number in \(0"),
        ({"beta": 1.5}, r"beta must be a finite number in \[0.0, 1.0\]"),
    ):
        with pytest.raises(ValueError, match=message):
            SimRegMatch(make_regressor(), **kwargs)


def test_cli_trains_and_exports_a_serving_model(tmp_path):
    results = assert_cli_exports(
        tmp_path, ["simregmatch"], ["--simregmatch-passes", "3"]
    )
    assert results["config"]["methods"]["simregmatch"]["mc_passes"] == 3
