"""Prepared TFDS data sets read offline (datasets.tfds_data), on tiny local builders."""

import numpy as np
import pytest

from datasets import load_dataset, tfds_data
from datasets.data_files import DataNotFoundError
from datasets.table_files import AllRowsLabeledWarning
from tests.tfds_builders.tiny_builders import TinyFaces, TinyHouses, prepare


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    prepare(TinyHouses, root)
    prepare(TinyFaces, root)
    return root


def test_tabular_features_nan_targets_and_splits(tfds_dir):
    data = tfds_data.load(
        "tiny_houses",
        "price",
        data_dir=tfds_dir,
        features="features/rooms,features/garden",
    )
    assert data.modality == "tabular" and data.num_rows == 40
    assert data.feature_names == (
        "features/rooms",
        "features/garden=no",
        "features/garden=yes",
    )
    assert len(data.split_rows["train"]) == 30 and len(data.split_rows["test"]) == 10
    # Every 3rd train row (10 rows) has no price; they are all train rows.
    assert data.num_without_target == 10
    assert set(np.flatnonzero(~data.has_target)) <= set(data.split_rows["train"])
    # Rows stay aligned: price = 3 rooms + 10 (garden).
    rooms, garden_yes = data.x[:, 0], data.x[:, 2]
    targeted = data.has_target
    np.testing.assert_allclose(
        data.y[targeted], 3 * rooms[targeted] + 10 * garden_yes[targeted]
    )
    assert data.input_encoder.input_keys["features/rooms"] == "features_rooms"


def test_default_features_are_the_numeric_ones(tfds_dir):
    data = tfds_data.load("tiny_houses", "price", data_dir=tfds_dir)
    assert data.feature_names == ("features/rooms", "id")


def test_images_keep_their_size_or_are_resized(tfds_dir):
    with pytest.warns(AllRowsLabeledWarning, match="all 16 rows"):
        data = load_dataset("tfds:tiny_faces", target="age", data_dir=str(tfds_dir))
    assert data.modality == "image" and data.x.shape == (16, 8, 6, 1)
    assert data.x.dtype == np.uint8 and data.name == "tiny_faces"
    np.testing.assert_array_equal(data.x[:, 0, 0, 0], 4 * data.y)  # aligned
    np.testing.assert_array_equal(
        np.sort(data.y[data.split_rows["validation"]]), [40, 41, 42, 43]
    )
    with pytest.warns(AllRowsLabeledWarning):
        small = tfds_data.load(
            "tiny_faces:2.0.0", "age", data_dir=tfds_dir, image_size=4, splits="train"
        )
    assert small.x.shape == (12, 4, 4, 1) and small.split_rows is None
    np.testing.assert_allclose(small.x[:, 0, 0, 0], 4 * small.y, atol=1)


def test_bad_cases_name_what_to_fix(tfds_dir, tmp_path):
    with pytest.raises(
        DataNotFoundError, match=r"no prepared data set in .*nope.*never downloads"
    ):
        tfds_data.load("nope", "y", data_dir=tfds_dir)
    with pytest.raises(DataNotFoundError, match=r"tiny_faces/9.9.9/dataset_info.json"):
        tfds_data.load("tiny_faces:9.9.9", "age", data_dir=tfds_dir)
    with pytest.raises(ValueError, match=r"no feature named 'cost'.*features/rooms"):
        tfds_data.load("tiny_houses", "cost", data_dir=tfds_dir)
    with pytest.raises(ValueError, match="'features/garden' must be a numeric scalar"):
        tfds_data.load("tiny_houses", "features/garden", data_dir=tfds_dir)
    with pytest.raises(ValueError, match=r"no split\(s\) \['dev2'\]"):
        tfds_data.load("tiny_houses", "price", data_dir=tfds_dir, splits="train,dev2")
    with pytest.raises(ValueError, match=r"no feature column named 'garden'"):
        tfds_data.load("tiny_houses", "price", data_dir=tfds_dir, features="garden")
