"""Checks shared by the methods that predict from labeled anchors (SSDKL, TNNR).

Their prediction is not the regressor's: `call` (what `evaluate` uses) and
`inference_model()` (what is exported) must agree with each other and with the
served SavedModel, and the trainer's command line must export a model whose
`serving_default` gives the test metrics the run reported.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.export import export_regressor
from keras_ssr.methods.registry import get_method
from tests.helpers import (
    assert_same_fit,
    compiled,
    fit_state,
    linear_problem,
    make_batch,
    make_regressor,
)
from trainers.experiment import load_data, make_split
from trainers.run import main, parse_args


def trained(cls, seed=3, steps=5, **kwargs):
    """A `cls` model fitted a few steps on the linear problem, anchored on the
    labeled rows, with the data: `(model, x, y, batch)`."""
    keras.utils.set_random_seed(seed)
    x, y = linear_problem(n=300)
    batch = make_batch(x, y, n_l=32, n_u=64)
    model = compiled(
        cls, make_regressor(), optimizer=keras.optimizers.Adam(1e-2), **kwargs
    )
    model.fit(
        tf.data.Dataset.from_tensors(batch).repeat(steps),
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    model.set_anchors(x[:32], y[:32])
    return model, x, y, batch


def check_served_equals_evaluate(model, x, y, export_dir):
    """`predict` (= `call`), `inference_model()`, the SavedModel's
    `serving_default` and `evaluate`'s metrics agree on `(x, y)`."""
    predicted = model.predict(x, verbose=0)
    inference = model.inference_model()
    np.testing.assert_allclose(inference(x).numpy(), predicted, rtol=1e-5, atol=1e-5)
    export_regressor(inference, export_dir, x.shape[1])
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    served = serve(features=tf.constant(x))["predictions"].numpy()
    np.testing.assert_allclose(served, predicted, rtol=1e-5, atol=1e-5)
    metrics = model.evaluate(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
        verbose=0,
        return_dict=True,
    )
    np.testing.assert_allclose(
        metrics["mae"], np.mean(np.abs(served[:, 0] - y)), rtol=1e-5
    )


def check_cli_exports_what_it_evaluated(method, tmp_path, extra=()):
    """`python -m trainers.run --methods <method>` for one short epoch: its
    SavedModel serves raw inputs, and on the run's test rows gives the test
    MAE the run reported (which `evaluate`, i.e. `call`, computed)."""
    out, exported = str(tmp_path / "runs"), str(tmp_path / "savedmodels")
    argv = [
        "--methods",
        method,
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--verbose",
        "0",
        "--hidden-units",
        "16",
        "--output-dir",
        out,
        "--export-dir",
        exported,
        "--run-name",
        "r",
        *extra,
    ]
    assert main(argv) == 0
    results = json.load(open(os.path.join(out, "r", "results.json")))
    (record,) = results["records"]
    config = parse_args(argv)
    data = load_data(config)
    split = make_split(data, config, 0, get_method(method))
    serve = tf.saved_model.load(results["exports"][method]["path"]).signatures[
        "serving_default"
    ]
    x_test = data.x[split.test].astype("float32")
    served = serve(features=tf.constant(x_test))["predictions"].numpy()[:, 0]
    assert served.shape == (len(split.test),) and np.all(np.isfinite(served))
    mae = float(np.mean(np.abs(served - data.y[split.test])))
    np.testing.assert_allclose(mae, record["test_mae"], rtol=1e-4)


def assert_replicas_and_xla_match(cls, two_device_strategy):
    """`cls` fitted 3 steps: 2 replicas = one device (same global batches) and
    XLA = graph mode, logs and weights (rtol 1e-4)."""
    x, y = linear_problem()
    ds = tf.data.Dataset.from_tensors(make_batch(x, y, n_l=32, n_u=64)).repeat(3)

    def make_model():
        return compiled(cls, make_regressor(), optimizer=keras.optimizers.Adam(1e-2))

    one_device = fit_state(make_model, ds, seed=5)
    assert_same_fit(one_device, fit_state(make_model, ds, two_device_strategy, seed=5))
    assert_same_fit(one_device, fit_state(make_model, ds, jit_compile=True, seed=5))
