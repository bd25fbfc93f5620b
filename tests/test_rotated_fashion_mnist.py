"""rotated_fashion_mnist: Fashion-MNIST's gzip IDX files, target = rotation angle.

The fixtures are small files written here byte by byte in the IDX format
(big-endian magic number and sizes), so the parser is checked against the
format, not against itself.
"""

import gzip
import struct

import numpy as np
import pytest

from datasets import rotated_fashion_mnist as rfm
from datasets.data_files import DataNotFoundError
from datasets.registry import dataset_names
from keras_ssr.data.image_views import GEOMETRIC_OPS, ImageViews
from trainers.cli import parse_args
from trainers.experiment import load_data

NUM_TRAIN, NUM_TEST = 24, 6


def idx_bytes(array, magic):
    """IDX by hand: `>I` magic, one `>I` per dimension, then the raw bytes."""
    sizes = b"".join(struct.pack(">I", d) for d in array.shape)
    return struct.pack(">I", magic) + sizes + np.asarray(array, "uint8").tobytes()


def write_gz(path, content):
    with gzip.open(path, "wb") as file:
        file.write(content)


def bar_images(n, rng):
    """Vertical bars (rows 4-23, 2 px wide) through the centre, random brightness."""
    images = np.zeros((n, 28, 28), "uint8")
    images[:, 4:24, 13:15] = rng.integers(150, 256, size=(n, 1, 1))
    return images


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        image_file, label_file = rfm.FILES[part]
        write_gz(tmp_path / image_file, idx_bytes(bar_images(n, rng), 0x803))
        write_gz(tmp_path / label_file, idx_bytes(np.arange(n) % 10, 0x801))
    return tmp_path


def bar_angle(image):
    """Counter-clockwise angle of the bar from vertical, from image moments."""
    rows, cols = np.indices(image.shape)
    weights = image.astype("float64") / image.sum()
    y, x = (rows * weights).sum(), (cols * weights).sum()
    # Upwards is -row: a bar leaning left at the top has d(col)/d(-row) < 0.
    dy, dx = -(rows - y), cols - x
    cov = np.array(
        [
            [(dx * dx * weights).sum(), (dx * dy * weights).sum()],
            [(dx * dy * weights).sum(), (dy * dy * weights).sum()],
        ]
    )
    vx, vy = np.linalg.eigh(cov)[1][:, -1]
    if vy < 0:
        vx, vy = -vx, -vy
    return np.degrees(np.arctan2(-vx, vy))


def test_reads_handwritten_idx_files(idx_dir):
    images, classes = rfm.read_part("train", idx_dir)
    assert images.shape == (NUM_TRAIN, 28, 28, 1) and images.dtype == np.uint8
    expected = bar_images(NUM_TRAIN, np.random.default_rng(0))
    np.testing.assert_array_equal(images[..., 0], expected)
    assert classes.tolist() == (np.arange(NUM_TRAIN) % 10).tolist()


def test_split_groups_and_angles(idx_dir):
    data = rfm.load(data_dir=idx_dir, validation_size=4, max_angle=30.0)
    assert data.name == "rotated_fashion_mnist" and data.modality == "image"
    assert data.x.shape == (NUM_TRAIN + NUM_TEST, 28, 28, 1)
    rows = data.split_rows
    assert {k: len(v) for k, v in rows.items()} == {
        "train": NUM_TRAIN - 4,
        "validation": 4,
        "test": NUM_TEST,
    }
    # Train and validation partition the training file; test = the test file.
    np.testing.assert_array_equal(
        np.sort(np.concatenate([rows["train"], rows["validation"]])),
        np.arange(NUM_TRAIN),
    )
    np.testing.assert_array_equal(rows["test"], NUM_TRAIN + np.arange(NUM_TEST))
    assert data.groups.tolist() == [i % 10 for i in range(NUM_TRAIN)] + list(
        range(NUM_TEST)
    )
    assert data.group_names[9] == "Ankle boot" and len(data.group_names) == 10
    assert np.abs(data.y).max() <= 30.0
    np.testing.assert_allclose(
        data.y, np.random.default_rng(0).uniform(-30, 30, NUM_TRAIN + NUM_TEST)
    )


def test_target_is_the_counter_clockwise_angle_of_the_content(idx_dir):
    data = rfm.load(data_dir=idx_dir, validation_size=4, max_angle=40.0)
    measured = np.array([bar_angle(image[..., 0]) for image in data.x])
    np.testing.assert_allclose(measured, data.y, atol=2.0)


def test_angles_depend_on_the_seed_but_the_split_does_not(idx_dir):
    one = rfm.load(data_dir=idx_dir, validation_size=4, seed=0)
    two = rfm.load(data_dir=idx_dir, validation_size=4, seed=1)
    assert not np.allclose(one.y, two.y)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(one.split_rows[part], two.split_rows[part])


def test_missing_directory_says_how_to_install(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as error:
        rfm.load(data_dir=missing)
    message = str(error.value)
    assert rfm.INSTALL_COMMAND in message
    assert "apt-get install --no-install-recommends dataset-fashion-mnist" in message
    assert str(missing) in message and "train-images-idx3-ubyte.gz" in message


def test_missing_label_file_is_named(idx_dir):
    (idx_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        rfm.load(data_dir=idx_dir, validation_size=4)


def test_truncated_gzip_is_reported_with_the_file(idx_dir):
    path = idx_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated or not gzip") as error:
        rfm.load(data_dir=idx_dir, validation_size=4)
    assert str(path) in str(error.value)


def test_not_gzip_is_reported(idx_dir):
    (idx_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="cannot decompress .*train-labels"):
        rfm.load(data_dir=idx_dir, validation_size=4)


def test_body_shorter_than_header_is_reported(idx_dir):
    path = idx_dir / "t10k-images-idx3-ubyte.gz"
    content = idx_bytes(bar_images(NUM_TEST, np.random.default_rng(0)), 0x803)
    write_gz(path, content[:-100])  # valid gzip, too few pixels
    with pytest.raises(ValueError, match=r"\(6, 28, 28\) \(4704 bytes\) but 4604"):
        rfm.load(data_dir=idx_dir, validation_size=4)


def test_wrong_magic_number_is_reported(idx_dir):
    # A label file where an image file belongs.
    write_gz(idx_dir / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros(24), 0x801))
    with pytest.raises(
        ValueError, match="magic number 0x00000801, expected 0x00000803"
    ):
        rfm.load(data_dir=idx_dir, validation_size=4)


def test_image_and_label_counts_must_agree(idx_dir):
    write_gz(idx_dir / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(23), 0x801))
    with pytest.raises(ValueError, match="24 images but .* 23 labels"):
        rfm.load(data_dir=idx_dir, validation_size=4)


def test_validation_size_must_leave_training_rows(idx_dir):
    with pytest.raises(ValueError, match="validation_size=24"):
        rfm.load(data_dir=idx_dir, validation_size=NUM_TRAIN)


def test_registered_and_read_through_the_trainer_data_dir_flag(tmp_path):
    # Enough training images for the default validation size.
    num_train = rfm.VALIDATION_SIZE + 6
    for part, n in (("train", num_train), ("test", 2)):
        image_file, label_file = rfm.FILES[part]
        write_gz(tmp_path / image_file, idx_bytes(np.zeros((n, 28, 28)), 0x803))
        write_gz(tmp_path / label_file, idx_bytes(np.arange(n) % 10, 0x801))
    assert "rotated_fashion_mnist" in dataset_names()
    flags = ["--dataset", "rotated_fashion_mnist", "--data-dir", str(tmp_path)]
    data = load_data(parse_args(flags))
    assert {k: len(v) for k, v in data.split_rows.items()} == {
        "train": 6,
        "validation": rfm.VALIDATION_SIZE,
        "test": 2,
    }


def test_recommended_views_preserve_the_angle():
    views = ImageViews(**rfm.VIEWS_CONFIG)
    assert not views.flip and views.fill_value == 0.0
    assert set(views.ops) & set(GEOMETRIC_OPS) == {"translate_x", "translate_y"}


@pytest.mark.skipif(
    not (rfm.DEFAULT_DIR / rfm.FILES["test"][1]).is_file(),
    reason=f"Fashion-MNIST not installed ({rfm.INSTALL_COMMAND})",
)
def test_installed_files_have_the_documented_sizes():
    counts = {}
    for part in ("train", "test"):
        labels = rfm.read_idx(rfm.DEFAULT_DIR / rfm.FILES[part][1], 0x801)
        counts[part] = np.bincount(labels).tolist()
    assert counts == {"train": [6000] * 10, "test": [1000] * 10}
