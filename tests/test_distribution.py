"""Every method under MirroredStrategy and XLA, and HPL on two worker processes.

test_methods/test_hpl/test_l2i/test_ppssl already compare 2 replicas with one
device for mean_teacher, hpl, l2i_v1/v2, ppssl and ssl, and XLA with graph mode
for hpl, l2i_v2 and ppssl; this file covers the remaining registered methods
through the trainer's own `build_model` and input pipeline.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from datasets import load_dataset
from keras_ssr.callbacks.resumable_checkpoint import training_variables
from keras_ssr.methods.registry import method_names
from tests import multi_worker_hpl
from trainers.cli import parse_args
from trainers.experiment import prepare_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Methods whose 2-replica run is not already compared elsewhere.
MIRRORED = ("supervised", "pseudo_label", "hpl_joint", "ppi_fixed", "ppi_closed_form")
MIRRORED += ("only_labeled", "rankup_no_rda")
# Methods whose XLA run is not already compared elsewhere.
JIT = MIRRORED + ("mean_teacher", "l2i_v1", "ssl")


def test_the_lists_cover_every_registered_method():
    # fully_supervised is `supervised` with every row labeled.
    elsewhere = {"mean_teacher", "hpl", "l2i_v1", "l2i_v2", "ppssl", "ssl"}
    elsewhere |= {"fully_supervised"}
    # Issue 12's baselines: their own test files compare both.
    own = {"pi_model", "temporal_ensembling", "simregmatch", "rankup"}
    own |= {"ssdkl", "tnnr", "ucvme", "clss"}
    assert set(MIRRORED) | elsewhere | own == set(method_names())
    assert set(JIT) | {"hpl", "l2i_v2", "ppssl", "fully_supervised"} | own == set(
        method_names()
    )


def _fit(method, strategy=None, jit_compile=False):
    argv = ["--dataset", "synthetic_two_group", "--num-labels", "64",
            "--hidden-units", "8", "--batch-size", "16", "--unlabeled-batch-size",
            "32", "--pretrain-size", "100", "--learning-rate", "1e-2",
            "--steps-per-epoch", "3"]  # fmt: skip
    argv += ["--jit-compile"] if jit_compile else []
    argv += ["--holdout-fraction", "0.25"] if method.startswith("hpl") else []
    config = parse_args(argv)
    keras.utils.set_random_seed(0)
    strategy = strategy or tf.distribute.get_strategy()
    run = prepare_run(method, _data(), config, 0, strategy, log_dir=None)
    model = run.model
    assert model.jit_compile or not jit_compile  # off: Keras' auto (off on CPU)
    history = model.fit(
        run.make_stream(), epochs=1, steps_per_epoch=3, verbose=0, shuffle=False
    )
    state = [np.asarray(v) for v in training_variables(model)]
    return history.history, state


def _data(cache={}):  # noqa: B006 (one load per test session)
    if "data" not in cache:
        cache["data"] = load_dataset("synthetic_two_group")
    return cache["data"]


def _assert_same(run_a, run_b):
    (h1, w1), (h2, w2) = run_a, run_b
    assert h1.keys() == h2.keys()
    for name in h1:
        assert h1[name][0] == pytest.approx(h2[name][0], rel=1e-4, abs=1e-6), name
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# Two in the default run; `make test-slow` runs them all (~10 s each).
_DEFAULT = ("pseudo_label", "ppi_closed_form")


@pytest.mark.parametrize(
    "method",
    [m if m in _DEFAULT else pytest.param(m, marks=pytest.mark.slow) for m in JIT],
)
def test_method_matches_on_two_replicas_and_under_xla(method, two_device_strategy):
    one_device = _fit(method)
    _assert_same(one_device, _fit(method, jit_compile=True))
    if method in MIRRORED:
        _assert_same(one_device, _fit(method, strategy=two_device_strategy))


# ---- two worker processes on 127.0.0.1 ----


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_worker_processes_end_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            tf_config = {
                "cluster": {"worker": workers},
                "task": {"type": "worker", "index": index},
            }
            env = dict(os.environ, PYTHONPATH=ROOT, TF_CONFIG=json.dumps(tf_config))
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "tests/multi_worker_hpl.py",
                        f"{tmp_path}/{index}",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        outputs = [p.communicate(timeout=180)[0].decode() for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    results = [np.load(f"{tmp_path}/{i}.npz") for i in range(2)]
    single = multi_worker_hpl.build_hpl()  # one process, the whole global batch
    dataset = multi_worker_hpl.stacked(multi_worker_hpl.global_batches())
    single.fit(
        tf.data.Dataset.from_tensor_slices(dataset),
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    expected = multi_worker_hpl.final_weights(single)
    for i, weight in enumerate(expected):
        worker_0, worker_1 = (r[f"arr_{i}"] for r in results)
        np.testing.assert_array_equal(worker_0, worker_1)
        np.testing.assert_allclose(worker_0, weight, rtol=1e-4, atol=1e-6)
    assert not np.allclose(expected[0], _initial_kernel())  # training moved it


def _initial_kernel():
    return np.asarray(multi_worker_hpl.build_hpl().regressor.weights[0])
