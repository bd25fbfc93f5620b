"""SmallCNNBackbone and ResNet50Backbone: preprocessing, weights, methods, saving."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.data.image_views import ImageViews
from keras_ssr.data.streams import make_train_stream
from keras_ssr.methods.registry import get_method
from keras_ssr.models.resnet50_backbone import ResNet50Backbone
from keras_ssr.models.small_cnn_backbone import SmallCNNBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor


def tiny_images(n, size=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels)).astype("uint8")


def image_batch(size=16, channels=3, batch_size=8):
    x = tiny_images(48, size, channels)
    y = np.linspace(-1.0, 1.0, 48).astype("float32")
    views = ImageViews()
    stream = make_train_stream(
        (x[:16], y[:16]),
        x[16:],
        views,
        labeled_batch_size=batch_size,
        unlabeled_batch_size=batch_size,
        labeled_augment=views.weak,
    )
    return next(iter(stream))


def compiled(name, backbone, input_shape):
    model = get_method(name)(SSRRegressor(backbone))
    model.build((None,) + input_shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build_optimizers()
    return model


def test_small_cnn_rescales_pixels_inside_and_round_trips_its_config():
    backbone = SmallCNNBackbone(filters=(4, 8), dropout=0.1)
    x = tiny_images(3, channels=1)
    features = backbone(x)
    assert features.shape == (3, 8)
    # Rescaling(1/255) is the first layer: pixels in [0, 255] in, uint8 allowed.
    np.testing.assert_allclose(backbone(x.astype("float32")), features)
    first_conv = backbone.blocks[0][0]
    np.testing.assert_allclose(
        first_conv(x.astype("float32") / 255.0),
        first_conv(backbone.rescaling(x.astype("float32"))),
        atol=1e-6,
    )
    clone = SmallCNNBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    assert clone.filters == (4, 8) and clone.dropout == 0.1


@pytest.mark.parametrize("name", ["supervised", "pseudo_label", "hpl"])
def test_small_cnn_trains_with_each_method(name):
    batch = image_batch()
    backbone = SmallCNNBackbone(filters=(4, 8), batch_norm=name == "hpl")
    model = compiled(name, backbone, (16, 16, 3))
    before = [w.numpy().copy() for w in model.regressor.backbone.trainable_weights]
    logs = model.train_step(batch)
    assert np.isfinite(logs["loss"].numpy())
    after = model.regressor.backbone.trainable_weights
    assert any(
        not np.allclose(b, a.numpy()) for b, a in zip(before, after, strict=True)
    )


def test_resnet50_preprocessing_warning_and_local_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file .* not found"):
        ResNet50Backbone(weights_path=tmp_path / "missing.h5")
    with pytest.warns(UserWarning, match="RANDOM initialisation"):
        source = ResNet50Backbone()
    x = tiny_images(2, size=32).astype("float32")
    expected = source.resnet(keras.applications.resnet50.preprocess_input(x.copy()))
    np.testing.assert_allclose(source(x), expected, rtol=1e-4, atol=1e-4)
    gray = x[..., :1]
    np.testing.assert_allclose(
        source(gray), source(np.repeat(gray, 3, axis=-1)), rtol=1e-5, atol=1e-5
    )
    path = tmp_path / "resnet50_notop.weights.h5"
    source.resnet.save_weights(path)
    # Keras' own download is a legacy by-layer-name .h5 file: write one too.
    legacy = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source.resnet)
    for weights in (path, legacy):
        loaded = ResNet50Backbone(weights_path=weights)
        np.testing.assert_allclose(loaded(x), expected, rtol=1e-5, atol=1e-5)


def test_resnet50_train_step_and_save_load_round_trip(tmp_path):
    batch = image_batch(size=32, channels=1, batch_size=4)
    model = compiled(
        "pseudo_label", ResNet50Backbone(warn_random_init=False), (32, 32, 1)
    )
    logs = model.train_step(batch)
    assert np.isfinite(logs["loss"].numpy())
    x = tiny_images(2, size=32, channels=1)
    path = tmp_path / "regressor.keras"
    model.regressor.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.backbone, ResNet50Backbone)
    np.testing.assert_allclose(reloaded(x), model.regressor(x), rtol=1e-5, atol=1e-4)


def test_small_cnn_regressor_save_load_round_trip(tmp_path):
    regressor = SSRRegressor(SmallCNNBackbone(filters=(4, 8)), target_mean=3.0)
    x = tiny_images(4, channels=1)
    expected = regressor(x)
    path = tmp_path / "small_cnn.keras"
    regressor.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.backbone.get_config() == regressor.backbone.get_config()
    np.testing.assert_allclose(reloaded(x), expected, rtol=1e-6)
    assert reloaded(tf.constant(x)).shape == (4, 1)
