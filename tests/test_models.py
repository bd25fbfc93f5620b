import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_ssr.export import export_regressor, next_version_dir
from keras_ssr.methods.mean_teacher import MeanTeacher
from keras_ssr.models.mlp_backbone import MLPBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor
from tests.helpers import linear_problem


def _regressor():
    model = SSRRegressor(
        MLPBackbone((8, 4), dropout=0.1),
        input_mean=[1.0, 2.0, 3.0],
        input_std=[2.0, 0.0, 1.0],
        target_mean=5.0,
        target_std=2.0,
    )
    model.build((None, 3))
    return model


def test_head_is_a_separate_dense_layer_and_scaling_is_in_graph():
    model = _regressor()
    assert isinstance(model.head, keras.layers.Dense) and model.head.units == 1
    assert model.input_std[1] == 1.0  # a zero std is floored, never divides by 0
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    feats = model.backbone((x - [1.0, 2.0, 3.0]) / [2.0, 1.0, 1.0])
    expected = model.head(feats).numpy() * 2.0 + 5.0
    np.testing.assert_allclose(model(x), expected, rtol=1e-5)
    np.testing.assert_allclose(
        model.destandardize(model.standardized(x)), model(x), rtol=1e-6
    )


def test_get_config_round_trip_and_keras_file(tmp_path):
    model = _regressor()
    clone = SSRRegressor.from_config(model.get_config())
    clone.build((None, 3))
    clone.set_weights(model.get_weights())
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-6)
    backbone = MLPBackbone.from_config(model.backbone.get_config())
    assert backbone.hidden_units == (8, 4) and backbone.dropout == 0.1
    path = str(tmp_path / "regressor.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_method_model_get_config_round_trip():
    method = MeanTeacher(
        _regressor(), ema_decay=0.9, unlabeled_weight=2.0, rampup_steps=5
    )
    config = method.get_config()
    clone = MeanTeacher.from_config(config)
    assert (clone.ema_decay, clone.unlabeled_weight, clone.rampup_steps) == (
        0.9,
        2.0,
        5,
    )
    assert clone.regressor.target_mean == 5.0


def test_savedmodel_in_fresh_process_matches_in_memory_predictions(tmp_path):
    model = _regressor()
    x, _ = linear_problem(n=50, d=3)
    x = x * 100  # raw, unstandardised units
    export = next_version_dir(str(tmp_path / "m"))
    assert export.endswith(os.path.join("m", "1"))
    export_regressor(model, export, 3)
    assert next_version_dir(str(tmp_path / "m")).endswith(os.path.join("m", "2"))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({export!r})
        fn = loaded.signatures["serving_default"]
        x = np.load({str(tmp_path / "x.npy")!r})
        y = fn(features=tf.constant(x))["predictions"].numpy()
        np.save({str(tmp_path / "y.npy")!r}, y)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    served = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(
        served, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )
    assert served.shape == (50, 1)


def test_unknown_ema_decay_is_refused():
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        MeanTeacher(_regressor(), ema_decay=1.0)


def test_input_clip_bounds_standardised_inputs_in_graph():
    model = SSRRegressor(MLPBackbone((4,)), [0.0], [1.0], input_clip=3.0)
    model.build((None, 1))
    extreme = np.array([[1e6]], "float32")
    np.testing.assert_allclose(model(extreme), model(np.array([[3.0]], "float32")))
    assert not np.allclose(model(np.array([[2.0]], "float32")), model(extreme))
    assert SSRRegressor.from_config(model.get_config()).input_clip == 3.0
