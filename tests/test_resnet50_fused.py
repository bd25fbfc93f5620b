"""ResNet50Backbone with fused batch normalisation against Keras' layers."""

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.layers.fused_batch_normalization import FusedBatchNormalization
from keras_ssr.models.resnet50_backbone import ResNet50Backbone


def batch_norms(backbone):
    return [
        layer
        for layer in backbone.resnet.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def forward_backward(backbone, x):
    """Training features, inference features, gradients, moving statistics."""
    with tf.GradientTape() as tape:
        features = backbone(x, training=True)
        weights = keras.ops.cast(keras.ops.arange(2048) / 2048, features.dtype)
        loss = keras.ops.sum(features * weights)
    grads = tape.gradient(loss, backbone.trainable_weights)
    inference = backbone(x, training=False)
    stats = [w.numpy() for w in backbone.non_trainable_weights]
    return [features.numpy(), inference.numpy()], [g.numpy() for g in grads], stats


def test_fused_batch_norm_is_as_close_to_float64_as_keras_float32(float64):
    """Errors against a float64 Keras-BN backbone: fused float32 <= Keras float32.

    53 batch norms on a batch of 4 amplify float32 rounding (late layers
    normalise over 4 values), so both float32 runs differ from float64 by
    ~1e-3; the fused one must not be worse.
    """
    reference = ResNet50Backbone(warn_random_init=False, fused_batch_norm=False)
    weights = reference.resnet.get_weights()
    keras.config.set_floatx("float32")
    keras_bn = ResNet50Backbone(warn_random_init=False, fused_batch_norm=False)
    fused = ResNet50Backbone(warn_random_init=False)
    assert all(type(b) is FusedBatchNormalization for b in batch_norms(fused))
    assert len(batch_norms(fused)) == len(batch_norms(keras_bn)) == 53
    assert [w.path for w in fused.weights] == [w.path for w in keras_bn.weights]
    for backbone in (keras_bn, fused):
        backbone.resnet.set_weights(weights)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3))
    expected = forward_backward(reference, tf.constant(x, "float64"))
    errors = []
    for backbone in (keras_bn, fused):
        got = forward_backward(backbone, tf.constant(x, "float32"))
        errors.append(
            [
                max(
                    float(np.max(np.abs(g - e))) / (float(np.max(np.abs(e))) + 1e-12)
                    for g, e in zip(got_part, expected_part, strict=True)
                )
                for got_part, expected_part in zip(got, expected, strict=True)
            ]
        )
    keras_error, fused_error = errors
    # outputs, gradients, moving statistics (relative to each tensor's scale)
    for k, f in zip(keras_error, fused_error, strict=True):
        assert f <= 2 * k + 1e-5, (keras_error, fused_error)
    # Conv biases feed training-mode batch norms: their gradients are ~0 in
    # exact arithmetic and pure rounding noise in both float32 runs, so only
    # outputs and moving statistics get an absolute bound.
    assert fused_error[0] < 0.01 and fused_error[2] < 0.01, fused_error


def test_configs_without_the_flag_rebuild_keras_batch_norm():
    fused = ResNet50Backbone(warn_random_init=False, name="backbone")
    config = fused.get_config()
    assert config["fused_batch_norm"] is True
    assert ResNet50Backbone.from_config(config).fused_batch_norm
    config.pop("fused_batch_norm")  # a model saved before the flag existed
    old = ResNet50Backbone.from_config(config)
    assert not old.fused_batch_norm
    assert all(type(b) is keras.layers.BatchNormalization for b in batch_norms(old))


def test_weights_files_of_either_batch_norm_load(tmp_path):
    keras_bn = ResNet50Backbone(warn_random_init=False, fused_batch_norm=False)
    fused = ResNet50Backbone(warn_random_init=False)
    fused.resnet.set_weights(
        [w + 0.01 for w in keras_bn.resnet.get_weights()]  # distinct weights
    )
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for source in (keras_bn, fused):
        path = tmp_path / f"{id(source)}.weights.h5"
        source.resnet.save_weights(path)
        for flag in (True, False):
            if flag is False and source is fused:
                continue  # fused layer names load only into fused layers
            loaded = ResNet50Backbone(weights_path=path, fused_batch_norm=flag)
            for a, b in zip(loaded.resnet.weights, source.resnet.weights, strict=True):
                np.testing.assert_array_equal(a.numpy(), b.numpy())
            np.testing.assert_allclose(loaded(x), source(x), rtol=1e-4, atol=1e-4)


def test_same_network_as_keras_applications():
    reference = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(None, None, 3)
    )
    backbone = ResNet50Backbone(warn_random_init=False, fused_batch_norm=False)
    ours = backbone.resnet
    # (the input layers are auto-named)
    assert [layer.name for layer in ours.layers[1:]] == [
        layer.name for layer in reference.layers[1:]
    ]
    assert [w.shape for w in ours.weights] == [w.shape for w in reference.weights]
    ours.set_weights(reference.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    for training in (False, True):
        np.testing.assert_allclose(
            ours(x, training=training),
            reference(x, training=training),
            rtol=1e-5,
            atol=1e-5,
        )
