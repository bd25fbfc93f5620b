import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.export import export_regressor
from keras_ssr.methods.registry import get_method
from keras_ssr.methods.ucvme import (
    UCVME,
    RegressorEnsemble,
    ucvme_terms,
)
from tests.helpers import compiled, linear_problem, make_batch, make_regressor
from trainers.run import main


def _outputs(rng, n):
    """`[(mean, log_variance)] * 2` of shape `(n, 1)`, float64 tensors."""
    return [
        tuple(tf.constant(rng.normal(size=(n, 1))) for _ in range(2)) for _ in range(2)
    ]


def _hetero(target, mean, z):
    """mean_i (yhat_i - y_i)^2 / (2 exp(z_i)) + z_i / 2 (paper eq. 1)."""
    return np.mean((mean - target) ** 2 / (2 * np.exp(z)) + z / 2)


@pytest.mark.parametrize("labeled_variance", ["paper", "reference"])
def test_loss_terms_match_numpy(labeled_variance):
    rng = np.random.default_rng(0)
    y = rng.normal(size=6)
    labeled, unlabeled = _outputs(rng, 6), _outputs(rng, 9)
    pseudo = tuple(tf.constant(rng.normal(size=(9, 1))) for _ in range(2))
    terms = ucvme_terms(y, labeled, unlabeled, pseudo, 10.0, labeled_variance)
    (ma, za), (mb, zb) = [[t.numpy() for t in pair] for pair in labeled]
    y = y[:, None]
    if labeled_variance == "reference":
        z_used = ((za + zb) / 2,) * 2
    else:
        z_used = (za, zb)
    expected_lb = _hetero(y, ma, z_used[0]) + _hetero(y, mb, z_used[1])  # eq. 3
    expected_lb_unc = np.mean((za - zb) ** 2)  # eq. 2
    y_t, z_t = (t.numpy() for t in pseudo)
    (ua, uza), (ub, uzb) = [[t.numpy() for t in pair] for pair in unlabeled]
    expected_ulb = _hetero(y_t, ua, z_t) + _hetero(y_t, ub, z_t)  # eq. 10
    expected_ulb_unc = np.mean((uza - z_t) ** 2) + np.mean((uzb - z_t) ** 2)  # eq. 9
    np.testing.assert_allclose(terms["labeled_loss"], expected_lb, rtol=1e-12)
    np.testing.assert_allclose(terms["labeled_consistency"], expected_lb_unc)
    np.testing.assert_allclose(terms["unlabeled_loss"], expected_ulb, rtol=1e-12)
    np.testing.assert_allclose(terms["unlabeled_consistency"], expected_ulb_unc)
    total = expected_lb + expected_lb_unc + 10.0 * (expected_ulb + expected_ulb_unc)
    np.testing.assert_allclose(terms["loss"], total, rtol=1e-12)  # eq. 11


def test_loss_terms_by_hand():
    """One labeled and one unlabeled row, computed on paper."""
    c = lambda v: tf.constant([[v]], tf.float64)  # noqa: E731
    labeled = [(c(1.0), c(0.0)), (c(3.0), c(np.log(2.0)))]
    unlabeled = [(c(0.0), c(1.0)), (c(2.0), c(-1.0))]
    pseudo = (c(1.0), c(0.0))
    terms = ucvme_terms([2.0], labeled, unlabeled, pseudo, 0.5)
    # (1-2)^2/2 + 0 + (3-2)^2/(2*2) + ln2/2
    assert float(terms["labeled_loss"]) == pytest.approx(0.75 + np.log(2) / 2)
    assert float(terms["labeled_consistency"]) == pytest.approx(np.log(2) ** 2)
    # (0-1)^2/2 + (2-1)^2/2; (1-0)^2 + (-1-0)^2
    assert float(terms["unlabeled_loss"]) == pytest.approx(1.0)
    assert float(terms["unlabeled_consistency"]) == pytest.approx(2.0)
    expected = 0.75 + np.log(2) / 2 + np.log(2) ** 2 + 0.5 * 3.0
    assert float(terms["loss"]) == pytest.approx(expected)


def _model(**kwargs):
    model = compiled(
        UCVME, make_regressor(), optimizer=keras.optimizers.Adam(1e-2), **kwargs
    )
    return model


def test_pseudo_labels_are_the_mean_of_the_mc_samples():
    x, _ = linear_problem(n=12)
    model = _model(num_samples=4, dropout_rate=0.3)
    seed = tf.constant([7, 0], tf.int64)
    means, log_variances = (s.numpy() for s in model.mc_samples(x, seed))
    assert means.shape == log_variances.shape == (2, 4, 12, 1)
    # Dropout is on: the samples of a model differ, and the models differ.
    assert np.mean(np.ptp(means, axis=1) > 0) > 0.5
    assert not np.allclose(means[0], means[1])
    # Fixed seed: the same samples again; eq. 7-8: their mean over (model, t).
    again = model.mc_samples(x, seed)[0].numpy()
    np.testing.assert_array_equal(means, again)
    y_tilde, z_tilde = model.pseudo_labels(x, seed)
    np.testing.assert_allclose(y_tilde, means.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(z_tilde, log_variances.mean(axis=(0, 1)), rtol=1e-6)
    other = model.mc_samples(x, tf.constant([8, 0], tf.int64))[0].numpy()
    assert not np.allclose(other, means)


def test_mc_samples_are_unbiased_around_the_dropout_off_prediction():
    """Inverted dropout before a linear head: E_mask[sample] = the dropout-off
    output, and each mask keeps a fraction 1 - rate of the features."""
    x, _ = linear_problem(n=4)
    model = _model(num_samples=4000, dropout_rate=0.2)
    means = model.mc_samples(x, tf.constant([1, 0], tf.int64))[0].numpy()
    off = [m.standardized(x, training=True).numpy() for m in model.members]
    spread = means.std(axis=1) / np.sqrt(4000)
    for member in range(2):
        error = np.abs(means[member].mean(axis=0) - off[member])
        assert np.all(error < 5 * spread[member])


def test_compute_losses_follow_the_equations_without_dropout():
    """Dropout 0: each MC sample is the model's own output, so y~ and z~ are
    the means of the two models' outputs (eq. 7-8), and the loss is eq. 11 of
    the heads' outputs."""
    x, y = linear_problem()
    batch = make_batch(x, y)
    model = _model(dropout_rate=0.0, unlabeled_weight=3.0)
    terms = model.compute_losses(batch)
    x_l, y_l = (t.numpy() for t in batch["labeled"])
    x_u = batch["unlabeled"][0].numpy()

    def outputs(x_in):
        out = []
        for member, head in zip(model.members, model.log_variance_heads, strict=True):
            features = member.features(x_in, training=True)
            out.append((member.head(features).numpy(), head(features).numpy()))
        return out

    (ma, za), (mb, zb) = outputs(x_l)
    (ua, uza), (ub, uzb) = outputs(x_u)
    y_t, z_t = (ua + ub) / 2, (uza + uzb) / 2
    y_l = y_l[:, None]
    expected = (
        _hetero(y_l, ma, za)
        + _hetero(y_l, mb, zb)
        + np.mean((za - zb) ** 2)
        + 3.0
        * (
            _hetero(y_t, ua, z_t)
            + _hetero(y_t, ub, z_t)
            + np.mean((uza - z_t) ** 2)
            + np.mean((uzb - z_t) ** 2)
        )
    )
    np.testing.assert_allclose(terms["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(terms["log_variance"], z_t.mean(), rtol=1e-5, atol=1e-7)


def test_log_variance_range_clamps_every_log_variance():
    x, _ = linear_problem(n=16)
    model = _model(log_variance_range=(-0.01, 0.02))
    _, log_variances = model.mc_samples(x, tf.constant([1, 0], tf.int64))
    z = log_variances.numpy()
    assert z.min() >= -0.01 and z.max() <= 0.02
    assert np.isclose(z.min(), -0.01) or np.isclose(z.max(), 0.02)


def test_train_step_updates_both_models_and_heads():
    x, y = linear_problem()
    model = _model()
    group = model.variable_groups()["regressor"].variables
    assert len(group) == len({id(v) for v in group}) == 12  # 2 x (4 + 2)
    before = [v.numpy().copy() for v in group]
    model.train_step(make_batch(x, y))
    for old, new in zip(before, group, strict=True):
        assert not np.array_equal(old, new.numpy())
    assert model.second_regressor.name == model.regressor.name + "_b"


def test_second_model_starts_from_different_weights():
    model = _model()
    a, b = (m.get_weights() for m in model.members)
    assert not np.allclose(a[0], b[0])


def test_prediction_is_the_mean_of_both_models_and_exports(tmp_path):
    x, y = linear_problem(n=64)
    model = _model()
    model.fit(tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(2), verbose=0)
    members = [m(x, training=False).numpy() for m in model.members]
    expected = (members[0] + members[1]) / 2
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6)
    ensemble = model.inference_model()
    np.testing.assert_allclose(ensemble(x), expected, rtol=1e-6)
    path = str(tmp_path / "1")
    export_regressor(ensemble, path, x.shape[1])
    served = tf.saved_model.load(path).signatures["serving_default"]
    np.testing.assert_allclose(
        served(features=tf.constant(x))["predictions"], expected, rtol=1e-5
    )


def _fit_weights(strategy, dropout_rate, jit=False):
    keras.utils.set_random_seed(5)  # the same batch and initial weights
    x, y = linear_problem()
    ds = tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(2)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = _model(dropout_rate=dropout_rate, seed=3)
    model.compile(optimizer=model.optimizer, jit_compile=jit)
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
    weights = model.variable_groups()["regressor"].variables
    return history, [w.numpy() for w in weights]


def test_mirrored_strategy_matches_one_device(two_device_strategy):
    """Dropout on: the masks are drawn for the global batch and sliced."""
    (h1, w1), (h2, w2) = (_fit_weights(s, 0.2) for s in (None, two_device_strategy))
    for name in ("loss", "unlabeled_loss", "unlabeled_consistency"):
        assert h1[name][0] == pytest.approx(h2[name][0], rel=1e-4)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_jit_compile_matches_graph():
    (_, w1), (_, w2) = (_fit_weights(None, 0.2, jit) for jit in (False, True))
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_get_config_round_trip_and_bad_options():
    model = UCVME(
        make_regressor(),
        dropout_rate=0.1,
        num_samples=3,
        labeled_variance="reference",
        log_variance_range=(-5.0, 5.0),
        seed=4,
        unlabeled_weight=2.0,
    )
    clone = UCVME.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    model.build((None, 4))
    ensemble = model.inference_model()
    copy = RegressorEnsemble.from_config(ensemble.get_config())
    assert len(copy.members) == 2
    with pytest.raises(ValueError, match="dropout_rate must be < 1"):
        UCVME(make_regressor(), dropout_rate=1.0)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        UCVME(make_regressor(), num_samples=0)
    with pytest.raises(ValueError, match="labeled_variance must be one of"):
        UCVME(make_regressor(), labeled_variance="mean")
    with pytest.raises(ValueError, match="low must be < high"):
        UCVME(make_regressor(), log_variance_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="unlabeled_weight must be a finite"):
        UCVME(make_regressor(), unlabeled_weight=-1.0)


def test_cli_trains_and_exports_a_servable_model(tmp_path):
    out, exp = str(tmp_path / "runs"), str(tmp_path / "sm")
    argv = [
        "--methods", "ucvme", "--epochs", "1", "--steps-per-epoch", "2",
        "--verbose", "0", "--ucvme-samples", "2", "--ucvme-dropout", "0.1",
        "--output-dir", out, "--export-dir", exp, "--run-name", "u",
    ]  # fmt: skip
    assert main(argv) == 0
    served = tf.saved_model.load(os.path.join(exp, "u", "ucvme", "1"))
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    predictions = served.signatures["serving_default"](features=tf.constant(x))
    assert predictions["predictions"].shape == (5, 1)
    assert np.all(np.isfinite(predictions["predictions"].numpy()))
    assert get_method("ucvme").config_sections[0].name == "ucvme"
