"""The bad-input catalogue: each mistake gets an error that says what to do."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.callbacks.nan_guard import NanGuard, NonFiniteLossError
from keras_ssr.export import export_regressor
from keras_ssr.methods.supervised import Supervised
from keras_ssr.models.teacher import Teacher
from tests.helpers import compiled, linear_problem, make_batch, make_regressor
from trainers.distribution import check_jit_compile, check_tf_config, make_strategy
from trainers.run import main

FAST = [
    "--dataset=synthetic_two_group",
    "--epochs=1",
    "--steps-per-epoch=2",
    "--hidden-units=8",
    "--verbose=0",
]


def _run(tmp_path, *flags):
    out = [f"--output-dir={tmp_path}/runs", f"--export-dir={tmp_path}/sm"]
    return main(FAST + out + ["--run-name=r", *flags])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--methods=pseudo_label", "--label-ratio=1.0"], "unlabeled split is empty"),
        (["--num-labels=100000"], r"num_labels=100000 is outside \[1, 1400\]"),
    ],
)
def test_impossible_splits_exit_2_with_a_hint(tmp_path, capsys, flags, message):
    assert _run(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--methods=fixmatch"], "unknown method.*fixmatch; valid: .*hpl"),
        (["--dataset=mnist"], "unknown dataset 'mnist'; valid: "),
        (["--strategy=tpu"], "invalid choice: 'tpu'"),
        (["--resume"], "--resume needs the --run-name"),
        (["--checkpoint-every=-1"], r"--checkpoint-every -1 is outside \[0, inf\]"),
        (
            ["--resume", "--run-name=r", "--strategy=multi_worker"],
            "--resume is not supported with --strategy multi_worker",
        ),
    ],
)
def test_unknown_flag_values_list_the_valid_ones(capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--verbose=0", *flags])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_jit_compile_is_refused_under_mirrored_strategy(two_device_strategy):
    check_jit_compile(True, tf.distribute.get_strategy())  # one device: fine
    check_jit_compile(False, two_device_strategy)
    with pytest.raises(ValueError, match="drop --jit-compile or use --strategy one"):
        check_jit_compile(True, two_device_strategy)


@pytest.mark.parametrize(
    "value", [None, "not json", '{"cluster": {}}', '{"cluster": {"worker": ["a:1"]}}']
)
def test_multi_worker_needs_a_valid_tf_config(value):
    with pytest.raises(ValueError, match="needs TF_CONFIG .* e.g. TF_CONFIG="):
        check_tf_config(value)
    good = '{"cluster": {"worker": ["a:1", "b:2"]}, '
    good += '"task": {"type": "worker", "index": 1}}'
    assert check_tf_config(good)["task"]["index"] == 1
    with pytest.raises(ValueError, match="unknown strategy 'gpu'; valid: auto"):
        make_strategy("gpu")


def test_savedmodel_names_the_expected_dtype_and_shape(tmp_path):
    regressor = make_regressor()
    regressor(np.zeros((1, 3), "float32"))
    export_regressor(regressor, str(tmp_path / "1"), 3)
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    good = serve(features=tf.zeros((2, 3)))["predictions"]
    assert good.shape == (2, 1)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="float tensor but is a double"
    ):
        serve(features=tf.zeros((2, 3), tf.float64))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"features must have shape \(batch, 3\): one row per example",
    ):
        serve(features=tf.zeros((2, 5)))


def test_keras_teacher_files_load_in_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    path = str(tmp_path / "unsafe.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        Teacher.load(path)


# ---- NaN/inf ----


def test_guard_names_the_loss_term_and_the_step_of_a_poisoned_batch():
    x, y = linear_problem()
    batches = [make_batch(x, y, seed=s) for s in range(4)]
    x_l, y_l = batches[2]["labeled"]
    batches[2]["labeled"] = (x_l, tf.tensor_scatter_nd_update(y_l, [[0]], [np.nan]))
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    model = compiled(Supervised, make_regressor())
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(
            tf.data.Dataset.from_tensor_slices(stacked),
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[NanGuard()],
        )
    error = info.value
    assert list(error.terms)[:2] == ["labeled_loss", "loss"]
    assert (error.epoch, error.step, error.global_step) == (0, 2, 3)
    assert "non-finite labeled_loss=nan" in str(error)
    assert "at epoch 1, step 3 (global step 3)" in str(error)


def test_diverging_run_exits_3_and_keeps_the_last_good_state(tmp_path, capsys):
    code = _run(
        tmp_path,
        "--methods=supervised",
        "--learning-rate=1e30",
        "--steps-per-epoch=6",
        "--checkpoint-every=1",
    )
    err = capsys.readouterr().err
    assert code == 3, err
    assert "supervised, seed 0: training diverged: non-finite " in err
    assert "Last good checkpoint: " in err and "ckpt-" in err
    checkpoint = err.split("Last good checkpoint: ")[1].split(".\n")[0]
    reader = tf.train.load_checkpoint(checkpoint)
    for name, _ in tf.train.list_variables(checkpoint):
        if name.startswith("v"):
            assert np.all(np.isfinite(reader.get_tensor(name))), name
    export = err.split("last good SavedModel: ")[1].strip()
    assert os.path.exists(os.path.join(export, "saved_model.pb"))
    served = tf.saved_model.load(export).signatures["serving_default"]
    assert served(features=tf.zeros((2, 10)))["predictions"].shape == (2, 1)
