"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and seeds.

The logical devices must be configured before TensorFlow runs any op, so this
happens at import time, before any test module is collected.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture(autouse=True)
def _seeded_fresh_session():
    keras.backend.clear_session()
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture
def float64():
    """Runs a test with `keras.config.floatx()` = float64 (for exact math checks)."""
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


@pytest.fixture(scope="session")
def two_device_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    Separate MirroredStrategy objects in one process reuse collective instance
    keys, and a second strategy's all-reduce of another dtype then aborts with
    "Collective instance 100 expected type 0 and data_type 2 but got ... 1".
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
