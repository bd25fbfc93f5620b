import keras
import numpy as np
import pytest

from keras_ssr.methods.temporal_ensembling import TemporalEnsembling
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


def _model(num_unlabeled=8, alpha=0.6, **kwargs):
    return compiled(
        TemporalEnsembling,
        make_regressor(),
        alpha=alpha,
        num_unlabeled=num_unlabeled,
        **kwargs,
    )


def _closed_form(predictions, alpha):
    """z~ after t updates: the (1 - alpha) alpha^(t-k) weighted average of
    the predictions z_1..z_t, normalised by its weights' sum 1 - alpha^t."""
    t = len(predictions)
    weights = [(1 - alpha) * alpha ** (t - k) for k in range(1, t + 1)]
    return np.dot(weights, predictions) / (1 - alpha**t)


def test_constant_predictions_are_their_own_target_after_any_number_of_updates():
    model = _model()
    rows = np.array([1, 4, 6], "int32")
    p = np.array([0.3, -2.0, 5.0], "float32")
    for _ in range(7):
        model.accumulate(rows, p)
        target, has_target = model.targets(rows)
        np.testing.assert_allclose(target, p, rtol=1e-6)
        assert np.all(has_target)


def test_bias_corrected_targets_match_hand_computation():
    alpha = 0.6
    model = _model(alpha=alpha)
    sequence = [1.0, 2.0, 4.0]
    # By hand: Z = 0.4, 1.04, 2.224; z~ = Z / (1 - 0.6^t) = 1, 1.625, 2.8367.
    by_hand = [1.0, 1.625, 2.224 / (1 - 0.6**3)]
    for t, (z, expected) in enumerate(zip(sequence, by_hand, strict=True), 1):
        model.accumulate(np.array([2], "int32"), np.array([z], "float32"))
        target, _ = model.targets(np.array([2], "int32"))
        assert float(target[0]) == pytest.approx(expected, rel=1e-6)
        assert float(target[0]) == pytest.approx(
            _closed_form(sequence[:t], alpha), rel=1e-6
        )
    assert int(model.update_counts[2]) == 3
    _, has_target = model.targets(np.array([0, 2], "int32"))
    assert has_target.numpy().tolist() == [False, True]  # row 0 never updated


def test_train_step_loss_and_ensemble_update_match_numpy():
    x, y = linear_problem()
    alpha, lam = 0.6, 1.5
    batch = make_batch(x, y, unlabeled_index=True)
    model = _model(num_unlabeled=len(x) - 32, alpha=alpha, unlabeled_weight=lam)
    rows = batch["unlabeled_index"].numpy()
    # Give half of the batch's rows a history of two predictions.
    old = rows[::2]
    model.accumulate(old, np.full(len(old), 0.5, "float32"))
    model.accumulate(old, np.linspace(-1, 1, len(old)).astype("float32"))
    z_table = model.ensemble.numpy().copy()
    counts = model.update_counts.numpy().copy()
    z = model.regressor.standardized(batch["unlabeled"][0]).numpy()[:, 0]
    has = counts[rows] > 0
    target = np.where(
        has, z_table[rows] / (1 - alpha ** np.maximum(counts[rows], 1)), 0
    )
    expected = np.mean(has * (z - target) ** 2)
    logs = model.train_step(batch)
    assert float(logs["unlabeled_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(logs["target_fraction"]) == pytest.approx(has.mean())
    np.testing.assert_allclose(
        model.ensemble.numpy()[rows],
        alpha * z_table[rows] + (1 - alpha) * z,
        rtol=1e-5,
        atol=1e-7,
    )
    np.testing.assert_array_equal(model.update_counts.numpy()[rows], counts[rows] + 1)
    untouched = np.setdiff1d(np.arange(len(z_table)), rows)
    np.testing.assert_array_equal(model.ensemble.numpy()[untouched], z_table[untouched])


def _fit_model():
    return compiled(
        TemporalEnsembling,
        make_regressor(),
        optimizer=keras.optimizers.Adam(1e-2),
        num_unlabeled=512 - 32,
        unlabeled_weight=1.0,
    )


def test_two_replicas_and_xla_match_one_device(two_device_strategy):
    """Every replica ends with the one-device ensemble (rows gathered before
    the scatter); the tables are among the compared weights."""
    x, y = linear_problem()
    batches = list(make_stream(x, y, unlabeled_index=True).take(4))
    data = cached(batches).repeat(2)  # rows seen twice: targets in play
    one_device = fit_state(_fit_model, data)
    assert one_device[0]["target_fraction"][0] > 0
    assert_same_fit(one_device, fit_state(_fit_model, data, two_device_strategy))
    assert_same_fit(one_device, fit_state(_fit_model, data, jit_compile=True))


def test_get_config_round_trip_and_bad_options():
    model = TemporalEnsembling(
        make_regressor(), alpha=0.3, num_unlabeled=10, rampup_shape="linear"
    )
    clone = TemporalEnsembling.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    with pytest.raises(ValueError, match="alpha must be < 1"):
        TemporalEnsembling(make_regressor(), alpha=1.0)
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0"):
        TemporalEnsembling(make_regressor(), alpha=-0.1)
    with pytest.raises(ValueError, match="num_unlabeled must be >= 1"):
        TemporalEnsembling(make_regressor(), num_unlabeled=0)
    with pytest.raises(ValueError, match="pass num_unlabeled="):
        TemporalEnsembling(make_regressor()).build((None, 4))


def test_cli_trains_and_exports_a_serving_model(tmp_path):
    results = assert_cli_exports(
        tmp_path, ["temporal_ensembling"], ["--te-alpha", "0.5"]
    )
    assert results["config"]["methods"]["temporal_ensembling"]["alpha"] == 0.5
