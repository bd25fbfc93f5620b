"""Tests for the UTKFace, IMDB-WIKI-DIR, AgeDB-DIR and STS-B loaders.

Every test writes a small fixture tree in the exact format users have (see
tests/fixtures_paper_datasets.py) and checks labels, splits and labeling orders
against an independent computation, and the error and report messages.
"""

import re

import numpy as np
import pytest

from datasets import age_dir, load_dataset, stsb, utkface
from datasets.data_files import DataNotFoundError
from datasets.image_files import (
    CorruptImageError,
    CorruptImageWarning,
    decode_image_files,
)
from keras_ssr.data.split import SSRSplit
from tests import fixtures_paper_datasets as fx

SIZE = 8


def assert_images_match_ages(data):
    """Each fixture image is one grey value encoding its row's age."""
    assert data.x.dtype == np.uint8 and data.x.shape[1:] == (SIZE, SIZE, 3)
    expected = np.array([fx.age_colour(a) for a in data.y])
    np.testing.assert_allclose(data.x.mean(axis=(1, 2, 3)), expected, atol=3)


def hpl_order(train_rows):
    """HPL's draw, literally: np.random.seed(0); np.random.shuffle(indices)."""
    indices = np.arange(len(train_rows))
    np.random.seed(0)
    np.random.shuffle(indices)
    return np.asarray(train_rows)[indices]


@pytest.fixture(scope="module")
def utk_rows():
    return fx.utkface_rows()


@pytest.fixture
def utk_root(tmp_path, utk_rows):
    fx.write_utkface_images(tmp_path / "UTKFace", utk_rows)
    return tmp_path


# --- UTKFace ---------------------------------------------------------------


def test_parse_file_name():
    assert utkface.parse_file_name("100_0_0_20170112213500903.jpg.chip.jpg") == (
        100,
        0,
        0,
    )
    assert utkface.parse_file_name("1_1_4_20161221193016140.jpg") == (1, 1, 4)
    assert utkface.parse_file_name(fx.MALFORMED_NAME) is None
    assert utkface.parse_file_name("30_0_7_20170116170000000.jpg.chip.jpg") is None


def test_raw_folder_labels_from_names_and_malformed_reported(utk_root, utk_rows):
    fx.write_jpeg(utk_root / "UTKFace" / fx.MALFORMED_NAME, 10)
    (utk_root / "UTKFace" / "README.txt").write_text("not an image")
    with pytest.warns(
        UserWarning, match=r"1 file name\(s\).*" + re.escape(fx.MALFORMED_NAME)
    ):
        data = utkface.load(utk_root, protocol="raw", image_size=SIZE)
    expected = sorted((f, a) for f, a, _ in utk_rows)
    np.testing.assert_array_equal(data.y, [a for _, a in expected])
    races = [int(f.split("_")[2]) for f, _ in expected]
    np.testing.assert_array_equal(data.groups, races)
    assert data.modality == "image" and data.split_rows is None
    assert_images_match_ages(data)


def test_hpl_csv_with_crlf_gives_labels_splits_and_hpl_labeled_order(
    utk_root, utk_rows
):
    fx.write_hpl_csv(utk_root / "utkface.csv", utk_rows, crlf=True)
    assert b"\r\n" in (utk_root / "utkface.csv").read_bytes()
    data = utkface.load(utk_root, protocol="hpl", image_size=SIZE)
    np.testing.assert_array_equal(data.y, [a for _, a, _ in utk_rows])
    splits = np.array([s for _, _, s in utk_rows])
    rows = data.split_rows
    np.testing.assert_array_equal(rows["train"], np.flatnonzero(splits == "TRAIN"))
    np.testing.assert_array_equal(rows["validation"], np.flatnonzero(splits == "VAL"))
    np.testing.assert_array_equal(rows["test"], np.flatnonzero(splits == "TEST"))
    expected_order = hpl_order(np.flatnonzero(splits == "TRAIN"))
    np.testing.assert_array_equal(rows["labeled_order"], expected_order)
    split = SSRSplit.from_protocol(rows, num_labels=5)
    np.testing.assert_array_equal(split.labeled, np.sort(expected_order[:5]))
    assert_images_match_ages(data)


def test_ucvme_age_shift_is_detected_and_undone(utk_root, utk_rows):
    fx.write_hpl_csv(utk_root / "FileList.csv", utk_rows, age_shift=21)
    with pytest.warns(UserWarning, match="age - 21"):
        data = utkface.load(utk_root, protocol="hpl", image_size=SIZE)
    np.testing.assert_array_equal(data.y, [a for _, a, _ in utk_rows])
    assert data.y.min() >= 21
    forced = utkface.load(utk_root, protocol="hpl", image_size=SIZE, age_offset=0)
    np.testing.assert_array_equal(forced.y, data.y - 21)


def test_ucvme_ssl_table_puts_labeled_rows_first(utk_root, utk_rows):
    labeled = {1, 4, 9}
    fx.write_ucvme_ssl_csv(utk_root / utkface.UCVME_SSL_TABLE, utk_rows, labeled)
    data = utkface.load(utk_root, protocol="ucvme_ssl", image_size=SIZE)
    order = data.split_rows["labeled_order"]
    np.testing.assert_array_equal(order[:3], sorted(labeled))
    split = SSRSplit.from_protocol(data.split_rows, num_labels=3)
    np.testing.assert_array_equal(split.labeled, sorted(labeled))
    assert len(split.unlabeled) == 18 - 3


def test_rankup_protocol_reads_meta_train_and_test(tmp_path):
    train = [
        ("1_0_0_20161219140623097.jpg.chip.jpg", 1, ""),
        ("116_1_2_20170112213500903.jpg.chip.jpg", 116, ""),
        ("45_0_3_20170117135559253.jpg.chip.jpg", 45, ""),
    ]
    test = [("8_1_4_20170109202455612.jpg.chip.jpg", 8, "")]
    fx.write_utkface_images(tmp_path / "UTKFace", train + test)
    fx.write_rankup_meta(tmp_path, train, test)
    data = utkface.load(tmp_path, protocol="rankup", image_size=SIZE)
    np.testing.assert_array_equal(data.y, [1, 116, 45, 8])
    assert data.split_rows["train"].tolist() == [0, 1, 2]
    assert data.split_rows["test"].tolist() == [3]
    assert data.split_rows["validation"].size == 0
    assert_images_match_ages(data)


def test_corrupt_images_are_reported_by_path_and_skipped(utk_root, utk_rows):
    image_dir = utk_root / "UTKFace"
    fx.write_corrupt_jpegs(image_dir / utk_rows[2][0], image_dir / utk_rows[20][0])
    fx.write_hpl_csv(utk_root / "utkface.csv", utk_rows)
    with pytest.warns(CorruptImageWarning) as record:
        data = utkface.load(utk_root, protocol="hpl", image_size=SIZE)
    message = str(record[0].message)
    assert "2 image file(s)" in message
    assert str(image_dir / utk_rows[2][0]) in message
    assert str(image_dir / utk_rows[20][0]) in message
    keep = np.ones(len(utk_rows), bool)
    keep[[2, 20]] = False
    np.testing.assert_array_equal(data.y, np.array([a for _, a, _ in utk_rows])[keep])
    new_index = np.cumsum(keep) - 1
    order = hpl_order(np.arange(18))
    np.testing.assert_array_equal(
        data.split_rows["labeled_order"], new_index[order[order != 2]]
    )
    assert len(data.split_rows["validation"]) == 5
    assert_images_match_ages(data)


def test_corrupt_images_raise_when_asked(utk_root, utk_rows):
    image_dir = utk_root / "UTKFace"
    fx.write_corrupt_jpegs(image_dir / utk_rows[0][0], image_dir / utk_rows[1][0])
    (image_dir / utk_rows[3][0]).unlink()
    fx.write_hpl_csv(utk_root / "utkface.csv", utk_rows)
    with pytest.raises(CorruptImageError) as info:
        utkface.load(utk_root, protocol="hpl", image_size=SIZE, on_corrupt="raise")
    message = str(info.value)
    assert "3 image file(s)" in message and "file not found" in message
    for i in (0, 1, 3):
        assert str(image_dir / utk_rows[i][0]) in message


def test_missing_or_empty_folder_names_expected_files(tmp_path, monkeypatch):
    (tmp_path / "utkface").mkdir()
    monkeypatch.setenv("KERAS_SSR_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("utkface")
    message = str(info.value)
    for expected in (
        "utkface.csv",
        "UTKFace",
        str(tmp_path / "utkface"),
        "KERAS_SSR_DATA_DIR",
        "susanqq.github.io",
    ):
        assert expected in message
    with pytest.raises(DataNotFoundError, match="imdb_wiki.csv"):
        age_dir.load_imdb_wiki_dir(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="train_new.tsv"):
        stsb.load(tmp_path / "nowhere")


def test_wrong_csv_header_names_file_expected_and_found(utk_root):
    (utk_root / "utkface.csv").write_text("File,age,SPLIT\na.jpg,30,TRAIN\n")
    with pytest.raises(ValueError) as info:
        utkface.load(utk_root, protocol="hpl", image_size=SIZE)
    message = str(info.value)
    assert str(utk_root / "utkface.csv") in message
    assert "'FileName'" in message and "'File'" in message


def test_unknown_split_value_is_named(utk_root, utk_rows):
    rows = [(f, a, "TRAINING" if i == 0 else s) for i, (f, a, s) in enumerate(utk_rows)]
    fx.write_hpl_csv(utk_root / "utkface.csv", rows)
    with pytest.raises(ValueError, match="training"):
        utkface.load(utk_root, protocol="hpl", image_size=SIZE)


# --- IMDB-WIKI-DIR / AgeDB-DIR -------------------------------------------


def dir_rows(prefixes, splits):
    rng = np.random.default_rng(3)
    return [
        (
            f"{p}/{i % 100:02d}/{1000 + i}_1980-05-0{i % 9 + 1}_20{10 + i % 5}.jpg",
            int(rng.integers(1, 100)),
            s,
        )
        for i, (p, s) in enumerate(zip(prefixes, splits, strict=True))
    ]


def test_imdb_wiki_dir_hpl_table_and_labeled_order(tmp_path):
    splits = ["train"] * 9 + ["val"] * 3 + ["test"] * 3
    prefixes = ["imdb_crop", "wiki_crop"] * 7 + ["imdb_crop"]
    rows = dir_rows(prefixes, splits)
    fx.write_dir_table(tmp_path, "imdb_wiki.csv", rows, split_column="SPLIT")
    data = load_dataset("imdb_wiki_dir", data_dir=tmp_path, image_size=SIZE)
    np.testing.assert_array_equal(data.y, [a for _, a, _ in rows])
    assert data.split_rows["train"].tolist() == list(range(9))
    assert data.split_rows["validation"].tolist() == [9, 10, 11]
    assert data.split_rows["test"].tolist() == [12, 13, 14]
    indices = np.arange(9)
    np.random.default_rng(0).shuffle(indices)  # HPL's imdb_wiki train_split
    np.testing.assert_array_equal(data.split_rows["labeled_order"], indices)
    assert_images_match_ages(data)


def test_agedb_dir_lowercase_split_and_protocols(tmp_path):
    rows = dir_rows(["AgeDB"] * 6, ["train", "train", "train", "val", "test", "test"])
    fx.write_dir_table(tmp_path, "agedb.csv", rows)
    data = age_dir.load_agedb_dir(tmp_path, image_size=SIZE)
    assert "labeled_order" not in data.split_rows
    hpl = age_dir.load_agedb_dir(tmp_path, image_size=SIZE, protocol="hpl")
    indices = np.arange(3)
    np.random.default_rng(0).shuffle(indices)
    np.testing.assert_array_equal(hpl.split_rows["labeled_order"], indices)
    with pytest.raises(ValueError, match="protocol"):
        age_dir.load_agedb_dir(tmp_path, protocol="rankup")
    assert data.split_rows["test"].tolist() == [4, 5]
    assert_images_match_ages(data)


def test_dir_missing_image_folder_is_named(tmp_path):
    (tmp_path / "agedb.csv").write_text("age,path,split\n30,AgeDB/0_A_30_f.jpg,train\n")
    with pytest.raises(DataNotFoundError, match=r"(?s)Missing or empty:.*AgeDB"):
        age_dir.load_agedb_dir(tmp_path, image_size=SIZE)


def test_dir_table_without_split_column(tmp_path):
    (tmp_path / "agedb.csv").write_text("age,path\n30,AgeDB/a.jpg\n")
    with pytest.raises(ValueError, match=r"agedb.csv: wrong header.*\['age', 'path'\]"):
        age_dir.load_agedb_dir(tmp_path, image_size=SIZE)


# --- STS-B -----------------------------------------------------------------


def test_stsb_dir_split_quote_none_and_hpl_order(tmp_path):
    parts = {
        "train_new.tsv": fx.stsb_rows(12, 0),
        "dev_new.tsv": fx.stsb_rows(4, 1, 100),
        "test_new.tsv": fx.stsb_rows(4, 2, 200),
    }
    for i, (file, rows) in enumerate(parts.items()):
        fx.write_glue_tsv(tmp_path / file, rows, crlf=i == 0)
    data = load_dataset("stsb", data_dir=tmp_path, protocol="dir")
    all_rows = [r for rows in parts.values() for r in rows]
    assert data.modality == "text" and data.x.shape == (20, 2)
    assert data.x[0, 0] == all_rows[0][0] and data.x[0, 0].startswith('"Quoted"')
    assert data.x[5, 1] == all_rows[5][1]
    np.testing.assert_allclose(data.y, [r[2] for r in all_rows], atol=1e-6)
    assert data.split_rows["validation"].tolist() == list(range(12, 16))
    np.random.seed(0)  # HPL: np.random.choice(train_idx, n_labeled, replace=False)
    labeled = np.random.choice(np.arange(12), 5, replace=False)
    np.testing.assert_array_equal(data.split_rows["labeled_order"][:5], labeled)


def test_stsb_glue_ignores_unlabeled_test_file(tmp_path):
    fx.write_glue_tsv(tmp_path / "train.tsv", fx.stsb_rows(6, 0))
    fx.write_glue_tsv(tmp_path / "dev.tsv", fx.stsb_rows(3, 1))
    fx.write_glue_tsv(tmp_path / "test.tsv", fx.stsb_rows(2, 2), with_score=False)
    data = stsb.load(tmp_path, protocol="glue")
    assert data.split_rows["train"].tolist() == list(range(6))
    assert data.split_rows["test"].tolist() == [6, 7, 8]
    assert data.split_rows["validation"].size == 0
    with pytest.raises(
        ValueError, match=r"test.tsv: wrong header.*missing \['score'\]"
    ):
        stsb.read_glue_tsv(tmp_path / "test.tsv")


def test_stsb_prepared_tfds_is_read_offline(tmp_path):
    train, validation = fx.stsb_rows(5, 0), fx.stsb_rows(3, 1, 50)
    test = [(s1, s2, -1.0) for s1, s2, _ in fx.stsb_rows(2, 2)]
    fx.write_prepared_tfds_stsb(
        tmp_path, {"train": train, "validation": validation, "test": test}
    )
    data = stsb.load(tmp_path, protocol="tfds")
    assert data.x.shape == (8, 2)
    assert [tuple(p) for p in data.x] == [(s1, s2) for s1, s2, _ in train + validation]
    np.testing.assert_allclose(data.y, [r[2] for r in train + validation], atol=1e-6)
    assert data.split_rows["test"].tolist() == [5, 6, 7]
    with pytest.raises(DataNotFoundError, match="glue/stsb"):
        stsb.load(tmp_path / "empty", protocol="tfds")


# --- image files -----------------------------------------------------------


def test_decode_image_files_size_and_order(tmp_path):
    paths = [tmp_path / f"{v}.jpg" for v in (10, 200, 90)]
    for path, value in zip(paths, (10, 200, 90), strict=True):
        fx.write_jpeg(path, value, size=(30, 20))
    images, kept = decode_image_files(paths, image_size=(6, 4))
    assert images.shape == (3, 6, 4, 3) and kept.all()
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), [10, 200, 90], atol=3)
    with pytest.raises(ValueError, match="on_corrupt"):
        decode_image_files(paths, on_corrupt="ignore")


def test_no_readable_image_raises_even_when_skipping(tmp_path):
    fx.write_corrupt_jpegs(tmp_path / "a.jpg", tmp_path / "b.jpg")
    with pytest.raises(CorruptImageError, match=r"none of the 2 image file\(s\)"):
        decode_image_files([tmp_path / "a.jpg", tmp_path / "b.jpg"], on_corrupt="skip")
