import keras
import numpy as np
import pytest

from keras_ssr.methods.pi_model import PiModel
from keras_ssr.methods.supervised import Supervised
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

LR = 0.1


def _head_gradient(model, batch, lam, stop_gradient):
    """d/dW of mean((F_l W + b - y)^2) + lam * mean((F_w W - F_s W)^2) in NumPy
    (the bias cancels in the consistency term); with `stop_gradient` the weak
    branch F_w W is a constant."""
    reg = model.regressor
    w = reg.head.kernel.numpy().astype("float64")
    b = reg.head.bias.numpy().astype("float64")
    x_l, y_l = batch["labeled"]
    x_weak, x_strong = batch["unlabeled"]
    f_l, f_w, f_s = (
        reg.features(x).numpy().astype("float64") for x in (x_l, x_weak, x_strong)
    )
    r_l = f_l @ w + b - y_l.numpy()[:, None]
    gap = (f_w - f_s) @ w  # z - z~
    if stop_gradient:
        consistency = -2 * f_s.T @ gap / len(f_s)
    else:
        consistency = 2 * (f_w - f_s).T @ gap / len(f_s)
    return 2 * f_l.T @ r_l / len(f_l) + lam * consistency


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_head_step_matches_closed_form_through_both_branches(stop_gradient):
    x, y = linear_problem()
    lam = 0.7
    model = compiled(
        PiModel,
        make_regressor(),
        unlabeled_weight=lam,
        pi_stop_gradient=stop_gradient,
    )
    batch = make_batch(x, y)
    expected = _head_gradient(model, batch, lam, stop_gradient)
    w0 = model.regressor.head.kernel.numpy()
    model.train_step(batch)
    step = (w0 - model.regressor.head.kernel.numpy()) / LR
    np.testing.assert_allclose(step, expected, rtol=2e-4, atol=1e-6)


def test_unlabeled_loss_is_the_squared_gap_of_the_two_passes():
    x, y = linear_problem()
    model = compiled(PiModel, make_regressor(), unlabeled_weight=2.0)
    batch = make_batch(x, y)
    z, z_tilde = (model.regressor.standardized(v).numpy() for v in batch["unlabeled"])
    terms = model.compute_losses(batch)
    gap = np.mean((z - z_tilde) ** 2)
    assert float(terms["unlabeled_loss"]) == pytest.approx(gap, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(
        float(terms["labeled_loss"]) + 2.0 * gap, rel=1e-5
    )


def test_identical_views_give_the_supervised_step():
    x, y = linear_problem()
    batch = make_batch(x, y, noise=0.0)  # weak = strong: zero consistency gap
    weights = []
    for cls in (Supervised, PiModel):
        keras.utils.set_random_seed(7)
        model = compiled(cls, make_regressor())
        model.train_step(batch)
        weights.append(model.regressor.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_gaussian_and_linear_rampups():
    steps = np.array([0, 25, 50, 100, 150])
    progress = np.minimum(1.0, steps / 100)
    for shape, expected in (
        ("gaussian", 2.0 * np.exp(-5.0 * (1.0 - progress) ** 2)),
        ("linear", 2.0 * progress),
    ):
        model = compiled(
            PiModel,
            make_regressor(),
            unlabeled_weight=2.0,
            rampup_steps=100,
            rampup_shape=shape,
        )
        got = []
        for step in steps:
            model.optimizer.iterations.assign(step)
            got.append(float(model.unlabeled_weight_now()))
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def _model():
    return compiled(
        PiModel,
        make_regressor(),
        optimizer=keras.optimizers.Adam(1e-2),
        unlabeled_weight=1.0,
        rampup_steps=4,
    )


def test_two_replicas_and_xla_match_one_device(two_device_strategy):
    x, y = linear_problem()
    data = cached(list(make_stream(x, y).take(3))).repeat(2)
    one_device = fit_state(_model, data)
    assert_same_fit(one_device, fit_state(_model, data, two_device_strategy))
    assert_same_fit(one_device, fit_state(_model, data, jit_compile=True))


def test_get_config_round_trip_and_bad_options():
    model = PiModel(
        make_regressor(), pi_stop_gradient=True, rampup_shape="linear", rampup_steps=9
    )
    clone = PiModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.pi_stop_gradient and clone.rampup_shape == "linear"
    with pytest.raises(ValueError, match="rampup_shape must be one of"):
        PiModel(make_regressor(), rampup_shape="cosine")


def test_cli_trains_and_exports_a_serving_model(tmp_path):
    results = assert_cli_exports(
        tmp_path, ["pi_model"], ["--pi-stop-gradient", "--rampup-shape", "linear"]
    )
    settings = results["config"]["methods"]
    assert settings["pi_model"]["pi_stop_gradient"] is True
    assert settings["self_ensembling"]["rampup_shape"] == "linear"
