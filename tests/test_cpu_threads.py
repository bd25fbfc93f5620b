"""set_cpu_threads: applies TensorFlow's pools in a fresh process, refuses late."""

import subprocess
import sys

import pytest
import tensorflow as tf

from keras_ssr.cpu_threads import (
    cpu_thread_settings,
    format_cpu_thread_settings,
    set_cpu_threads,
)


def test_applies_and_prints_the_pools_in_a_fresh_process():
    code = (
        "from keras_ssr.cpu_threads import set_cpu_threads\n"
        "import tensorflow as tf\n"
        "s = set_cpu_threads(intra_op=1, inter_op=3)\n"
        "tf.constant(1.0) + 1.0\n"
        "assert tf.config.threading.get_intra_op_parallelism_threads() == 1\n"
        "assert s['inter_op_threads'] == 3\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "CPU threads: intra-op 1, inter-op 3" in done.stdout


def test_refuses_after_tensorflow_has_started():
    tf.constant(1.0) + 1.0  # TensorFlow's runtime is up
    current = cpu_thread_settings()
    if current["intra_op_threads"] == 5:
        pytest.skip("already 5")
    with pytest.raises(RuntimeError, match="before it runs its first op"):
        set_cpu_threads(intra_op=5, log=None)


def test_reports_defaults_readably():
    lines = []
    settings = set_cpu_threads(log=lines.append)
    assert lines == [format_cpu_thread_settings(settings)]
    assert settings["cpus"] >= 1
    text = format_cpu_thread_settings(dict(settings, intra_op_threads=0))
    assert f"intra-op default ({settings['cpus']})" in text
