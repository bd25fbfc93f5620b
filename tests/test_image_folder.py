"""A user's image folder and labels CSV (datasets.image_folder)."""

import numpy as np
import pytest

from datasets import image_folder, load_dataset
from datasets.image_files import CorruptImageError, CorruptImageWarning
from datasets.table_files import AllRowsLabeledWarning
from tests.fixtures_paper_datasets import write_corrupt_jpegs, write_jpeg


@pytest.fixture
def photos(tmp_path):
    """5 images (one in a sub-folder); grey value = 10 x target where known."""
    root = tmp_path / "photos"
    for name, value in [("a.jpg", 10), ("b.png", 20), ("c.jpg", 30), ("d.jpg", 40)]:
        write_jpeg(root / name, value)
    write_jpeg(root / "more" / "e.jpg", 50)
    (root / "notes.txt").write_text("not an image")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,age\na.jpg,1\n./c.jpg,3\nd.jpg,\n")
    return root, labels


def test_images_without_a_row_or_target_are_unlabeled(photos):
    root, labels = photos
    data = image_folder.load(root, labels=labels, image_size=8)
    assert data.modality == "image" and data.x.shape == (5, 8, 8, 3)
    assert data.name == "photos" and data.target_name == "age"
    # Sorted paths: a.jpg b.png c.jpg d.jpg more/e.jpg.
    np.testing.assert_array_equal(data.has_target, [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(data.y[[0, 2]], [1, 3])
    # Every image stays aligned with its row (JPEG is lossy: +-3 grey levels).
    np.testing.assert_allclose(
        data.x.mean(axis=(1, 2, 3)), [10, 20, 30, 40, 50], atol=3
    )


def test_group_and_split_columns(photos, tmp_path):
    root, _ = photos
    labels = tmp_path / "split.csv"
    labels.write_text("file,age,region,part\na.jpg,1,x,train\nb.png,2,y,TEST\n")
    data = image_folder.load(
        root,
        labels=labels,
        image_size=8,
        target="age",
        group="region",
        split_column="part",
    )
    assert data.group_names == ("", "x", "y")  # "" = images without a row
    np.testing.assert_array_equal(data.groups, [1, 2, 0, 0, 0])
    np.testing.assert_array_equal(data.split_rows["test"], [1])
    np.testing.assert_array_equal(data.split_rows["train"], [0, 2, 3, 4])


def test_registered_as_image_folder(photos):
    root, labels = photos
    data = load_dataset(
        "image_folder", data_dir=str(root), labels=str(labels), image_size=4
    )
    assert data.num_with_target == 2


def test_listed_but_missing_and_corrupt_files_are_reported(photos, tmp_path):
    root, _ = photos
    write_corrupt_jpegs(root / "trunc.jpg", root / "garbage.jpg")
    labels = tmp_path / "l.csv"
    labels.write_text("file,age\na.jpg,1\nghost.jpg,5\ngarbage.jpg,6\n")
    with pytest.warns(CorruptImageWarning) as record:
        data = image_folder.load(root, labels=labels, image_size=8)
    message = str(record[0].message)
    assert "3 image file(s) could not be read" in message
    assert "ghost.jpg: file not found" in message
    assert "garbage.jpg" in message and "trunc.jpg" in message
    assert data.num_rows == 5 and data.num_with_target == 1
    with pytest.raises(CorruptImageError, match="ghost.jpg: file not found"):
        image_folder.load(root, labels=labels, image_size=8, on_corrupt="raise")


def test_bad_labels_tables(photos, tmp_path):
    root, _ = photos
    bad = tmp_path / "bad.csv"
    bad.write_text("file,age\na.jpg,1\nb.png,2\na.jpg,3\n")
    with pytest.raises(ValueError, match=r"'a.jpg' on lines 2, 4"):
        image_folder.load(root, labels=bad)
    bad.write_text("file,age,weight\na.jpg,1,2\n")
    with pytest.raises(
        ValueError, match=r"which column is the target\?.*'age', 'weight'"
    ):
        image_folder.load(root, labels=bad)
    with pytest.raises(ValueError, match=r"no target column named 'years'.*'file'"):
        image_folder.load(root, labels=bad, target="years")
    bad.write_text("file,age\na.jpg,old\n")
    with pytest.raises(ValueError, match=r"must hold numbers.*line 2: 'old'"):
        image_folder.load(root, labels=bad)
    bad.write_text("file,age\na.jpg,\n")
    with pytest.raises(ValueError, match="none of the 5 rows has a target"):
        image_folder.load(root, labels=bad)
    with pytest.raises(ValueError, match="give labels=FILE.csv"):
        image_folder.load(root)
    bad.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="cannot read the file"):
        image_folder.load(root, labels=bad)


def test_all_images_labeled_warns_and_missing_folder(tmp_path):
    root = tmp_path / "imgs"
    write_jpeg(root / "a.jpg", 1)
    labels = tmp_path / "l.csv"
    labels.write_text("file,y\na.jpg,1\n")
    with pytest.warns(AllRowsLabeledWarning, match="all 1 rows have a target"):
        image_folder.load(root, labels=labels, image_size=4)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        image_folder.load(tmp_path / "nowhere", labels=labels)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image file"):
        image_folder.load(empty, labels=labels)
