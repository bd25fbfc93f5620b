import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.ssdkl import SSDKL
from keras_ssr.models.gaussian_process import SquaredExponentialGP
from tests.anchored_checks import (
    assert_replicas_and_xla_match,
    check_cli_exports_what_it_evaluated,
    check_served_equals_evaluate,
    trained,
)
from tests.helpers import (
    batch64,
    central_difference,
    compiled,
    make_regressor,
)

HYPERPARAMETERS = (0.7, 1.3, 0.4)  # l, sigma_f, sigma_n


def numpy_gp(features, y, test_features, length, signal, noise):
    """-log p(y|X) (R&W eq. 2.30), the posterior mean (eq. 2.25) and the
    latent posterior variance (eq. 2.26), with dense solves in float64."""

    def kernel(a, b):
        squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return signal**2 * np.exp(-squared / (2 * length**2))

    k_y = kernel(features, features) + noise**2 * np.eye(len(features))
    nll = (
        0.5 * y @ np.linalg.solve(k_y, y)
        + 0.5 * np.linalg.slogdet(k_y)[1]
        + 0.5 * len(y) * np.log(2 * np.pi)
    )
    k_star = kernel(features, test_features)
    mean = k_star.T @ np.linalg.solve(k_y, y)
    variance = signal**2 - np.sum(k_star * np.linalg.solve(k_y, k_star), axis=0)
    return nll, mean, variance


def _set_hyperparameters(gp, values=HYPERPARAMETERS):
    for variable, value in zip(
        (gp.log_length_scale, gp.log_signal_std, gp.log_noise_std), values, strict=True
    ):
        variable.assign(np.log(value))


def test_marginal_likelihood_and_posterior_match_numpy(float64):
    rng = np.random.default_rng(0)
    features, test_features = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    y = rng.normal(size=7)
    gp = SquaredExponentialGP()
    gp.build()
    _set_hyperparameters(gp)
    fit = gp.fit(features, y)
    nll, mean, variance = numpy_gp(features, y, test_features, *HYPERPARAMETERS)
    assert float(gp.negative_log_marginal_likelihood(fit, y)) == pytest.approx(
        nll, rel=1e-12
    )
    np.testing.assert_allclose(
        gp.posterior_mean(fit, test_features)[:, 0], mean, rtol=1e-10
    )
    np.testing.assert_allclose(
        gp.posterior_variance(fit, test_features), variance, rtol=1e-9
    )
    # At a training row with tiny noise the latent variance vanishes.
    gp.log_noise_std.assign(np.log(1e-4))
    assert float(gp.posterior_variance(gp.fit(features, y), features[:1])[0]) < 1e-6


def _ssdkl64(alpha=0.7):
    model = SSDKL(
        make_regressor(hidden=(5,), dtype="float64"), alpha=alpha, dtype="float64"
    )
    model.build((None, 3))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.build_optimizers()
    _set_hyperparameters(model.gp)
    return model, batch64(n_u=12)


def test_objective_is_normalised_likelihood_plus_alpha_mean_variance(float64):
    model, batch = _ssdkl64(alpha=0.7)
    (x_l, y_l), (x_raw, x_strong) = batch["labeled"], batch["unlabeled"]
    terms = model.compute_losses(batch)
    f_l, f_u = (model.kernel_features(x).numpy() for x in (x_l, x_raw))
    assert f_l.shape == (6, 2)  # the 2-d linear embedding of the reference code
    nll, mean, variance = numpy_gp(f_l, y_l.numpy(), f_u, *HYPERPARAMETERS)
    assert float(terms["labeled_loss"]) == pytest.approx(nll / 6, rel=1e-10)
    assert float(terms["unlabeled_loss"]) == pytest.approx(variance.mean(), rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(
        nll / 6 + 0.7 * variance.mean(), rel=1e-10
    )
    _, fitted, _ = numpy_gp(f_l, y_l.numpy(), f_l, *HYPERPARAMETERS)
    np.testing.assert_allclose(terms["labeled_predictions"][:, 0], fitted, rtol=1e-8)
    # The strong view is not used (the paper has no augmentation).
    other = dict(batch, unlabeled=(x_raw, x_strong + 100.0))
    assert float(model.compute_losses(other)["loss"]) == float(terms["loss"])


def test_gradient_matches_finite_differences(float64):
    model, batch = _ssdkl64()
    variables = model.gp.trainable_weights + [model.embedding.kernel]
    with tf.GradientTape() as tape:
        loss = model.compute_losses(batch)["loss"]
    grads = tape.gradient(loss, variables)
    for variable, grad in zip(variables, grads, strict=True):
        flat = variable.numpy().ravel()

        def loss_at(values, variable=variable):
            variable.assign(values.reshape(variable.shape))
            return float(model.compute_losses(batch)["loss"])

        for i in range(flat.size):
            fd = central_difference(loss_at, flat, i)
            variable.assign(flat.reshape(variable.shape))
            assert grad.numpy().ravel()[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    assert all(abs(float(g)) > 1e-6 for g in grads[:3])


def test_prediction_is_the_posterior_mean_given_the_labeled_rows(tmp_path):
    model, x, y, _ = trained(SSDKL)
    length, signal, noise = (float(v) for v in model.gp.hyperparameters())
    features = model.kernel_features(x[:32]).numpy().astype("float64")
    test = model.kernel_features(x[100:140]).numpy().astype("float64")
    _, mean, _ = numpy_gp(
        features, y[:32].astype("float64"), test, length, signal, noise
    )
    np.testing.assert_allclose(
        model.predict(x[100:140], verbose=0)[:, 0], mean, rtol=1e-4, atol=1e-5
    )
    check_served_equals_evaluate(model, x[100:], y[100:], str(tmp_path / "1"))


def test_predicting_without_anchors_says_how_to_give_them():
    model = compiled(SSDKL, make_regressor())
    with pytest.raises(ValueError, match="set_anchors"):
        model.predict(np.zeros((2, 4), "float32"), verbose=0)


def test_two_replicas_and_xla_match_one_device(two_device_strategy):
    assert_replicas_and_xla_match(SSDKL, two_device_strategy)


def test_get_config_round_trip_and_bad_options():
    model = SSDKL(
        make_regressor(),
        alpha=0.3,
        embedding_dim=0,
        gp_learning_rate=0.05,
        noise_std=0.5,
    )
    clone = SSDKL.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert isinstance(clone.embedding, keras.layers.Identity)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        SSDKL(make_regressor(), alpha=-1.0)
    with pytest.raises(ValueError, match="embedding_dim must be >= 0"):
        SSDKL(make_regressor(), embedding_dim=-2)
    with pytest.raises(ValueError, match="noise_std must be a finite number > 0"):
        SSDKL(make_regressor(), noise_std=0.0)


def test_cli_exports_the_posterior_it_evaluated(tmp_path):
    check_cli_exports_what_it_evaluated("ssdkl", tmp_path)
