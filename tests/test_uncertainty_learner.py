import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.models.uncertainty_learner import UncertaintyLearner


def _inputs(batch=6, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    r = (scale * rng.normal(size=(batch, 1))).astype("float32")
    yhat = (scale * rng.normal(size=(batch, 1))).astype("float32")
    return r, yhat


def _numpy_forward(layer, features):
    kernel1, bias1, kernel2, bias2 = (w.numpy() for w in layer.weights)
    hidden = np.maximum(features @ kernel1 + bias1, 0.0)
    return hidden @ kernel2 + bias2


@pytest.mark.parametrize(
    "input_form, make_features",
    [
        ("reference", lambda r, yhat: np.concatenate([r - yhat, r], axis=-1)),
        ("paper", lambda r, yhat: np.concatenate([r, yhat], axis=-1)),
    ],
)
def test_input_forms_match_explicit_mlp(input_form, make_features):
    r, yhat = _inputs()
    layer = UncertaintyLearner(hidden_units=5, input_form=input_form)
    z = layer((r, yhat))
    assert tuple(z.shape) == (6, 1)
    expected = _numpy_forward(layer, make_features(r, yhat))
    np.testing.assert_allclose(z.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_architecture_and_initialisation():
    layer = UncertaintyLearner()
    layer(_inputs())
    kernel1, bias1, kernel2, bias2 = layer.weights
    assert tuple(kernel1.shape) == (2, 128) and tuple(kernel2.shape) == (128, 1)
    assert not np.any(bias1.numpy()) and not np.any(bias2.numpy())
    for dense in (layer.hidden, layer.log_variance):
        assert isinstance(dense.kernel_initializer, keras.initializers.GlorotNormal)
    assert layer.hidden.activation is keras.activations.relu


def test_invalid_arguments():
    with pytest.raises(ValueError, match="reference.*paper"):
        UncertaintyLearner(input_form="concat")
    with pytest.raises(ValueError, match="low < high"):
        UncertaintyLearner(log_variance_range=(1.0, -1.0))


def test_inputs_are_stop_gradient_but_weights_train():
    r, yhat = (tf.constant(v) for v in _inputs())
    layer = UncertaintyLearner(hidden_units=4)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([r, yhat])
        z_sum = tf.reduce_sum(layer((r, yhat)))
    assert tape.gradient(z_sum, [r, yhat]) == [None, None]
    weight_grads = tape.gradient(z_sum, layer.trainable_weights)
    assert all(g is not None for g in weight_grads)
    assert np.any(weight_grads[0].numpy())


def test_log_variance_is_clipped():
    r, yhat = _inputs(scale=1e4)
    layer = UncertaintyLearner(hidden_units=4, log_variance_range=(-3.0, 3.0))
    z = layer((r, yhat)).numpy()
    assert z.min() >= -3.0 and z.max() <= 3.0
    assert np.any(np.abs(z) == 3.0)
    unclipped = UncertaintyLearner(hidden_units=4, log_variance_range=None)
    unclipped((r, yhat))
    unclipped.set_weights(layer.get_weights())
    assert np.abs(unclipped((r, yhat)).numpy()).max() > 3.0


def test_float64_dtype():
    layer = UncertaintyLearner(hidden_units=4, dtype="float64")
    z = layer(_inputs())
    assert z.dtype == tf.float64
    assert all(w.dtype == "float64" for w in layer.weights)


def test_get_config_round_trip():
    inputs = _inputs()
    layer = UncertaintyLearner(
        hidden_units=7, input_form="paper", log_variance_range=(-5.0, 4.0)
    )
    z = layer(inputs)
    clone = UncertaintyLearner.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(inputs).numpy(), z.numpy())


def test_keras_file_round_trip(tmp_path):
    inputs = (keras.Input((1,)), keras.Input((1,)))
    layer = UncertaintyLearner(hidden_units=6, input_form="paper")
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "learner.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = restored.layers[-1]
    assert isinstance(restored_layer, UncertaintyLearner)
    assert restored_layer.get_config() == layer.get_config()
    data = _inputs(seed=3)
    np.testing.assert_array_equal(
        restored.predict(data, verbose=0), model.predict(data, verbose=0)
    )
