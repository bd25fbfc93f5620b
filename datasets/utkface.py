"""UTKFace age regression: raw folder, HPL/UCVME CSV protocol, RankUp protocol.

UTKFace cannot be downloaded by keras-ssr: users fetch it by hand (see
`MANUAL_DOWNLOAD_INSTRUCTIONS`) and point `data_dir` at the folder. Labels come
from the file names `[age]_[gender]_[race]_[yyyymmddHHMMSSFFF].jpg[.chip.jpg]`
("raw") or from a protocol table:

- `"hpl"`: HPL's `utkface.csv` or UCVME's `FileList.csv`, header
  `index,Unnamed: 0,FileName,age,SPLIT`, SPLIT in TRAIN/VAL/TEST, ages 21-60
  (10,518 / 2,629 / 3,287). UCVME's `FileList.csv` stores `age - 21`; the shift
  is detected (CSV ages vs file-name ages) and undone. `split_rows
  ["labeled_order"]` is HPL's order: `np.random.seed(0)`, shuffle the TRAIN rows
  in CSV order; the first 500 / 1000 / 2000 are HPL's labeled subsets
  (`num_labels=500` etc.).
- `"ucvme_ssl"`: UCVME's `FileList_ssl_1000_9518.csv`
  (`FileName,age,SPLIT,SSL_SPLIT`); `labeled_order` lists the TRAIN rows marked
  LABELED first, so `num_labels=1000` gives UCVME's labeled set.
- `"rankup"`: RankUp's `meta/train.csv` and `meta/test.csv`
  (`file_name,label`, all ages, 18,964 / 4,741); no validation split.

References:
    - Zhang, Song and Qi, "Age Progression/Regression by Conditional
      Adversarial Autoencoder", CVPR 2017 (UTKFace).
    - Dai et al., "Semi-Supervised Deep Regression with Uncertainty Consistency
      and Variational Model Ensembling via Bayesian Neural Networks", AAAI 2023
      (UCVME: the 21-60 protocol).
    - Sun et al., "Semi-Supervised Regression with Heteroscedastic
      Pseudo-Labels", NeurIPS 2025 (HPL).
    - Huang, Fu and Tsao, "RankUp: Boosting Semi-Supervised Regression with an
      Auxiliary Ranking Classifier", NeurIPS 2024.
"""

import os
import re
import warnings

import numpy as np

from datasets.data_files import (
    parse_numbers,
    read_checked_table,
    require_files,
    resolve_data_dir,
    split_names,
)
from datasets.image_files import image_regression_data

NAME = "utkface"
IMAGE_FOLDER = "UTKFace"
PROTOCOLS = ("raw", "hpl", "ucvme_ssl", "rankup")
HPL_TABLES = ("utkface.csv", "FileList.csv")
HPL_HEADER = ("index", "Unnamed: 0", "FileName", "age", "SPLIT")
UCVME_SSL_TABLE = "FileList_ssl_1000_9518.csv"
UCVME_SSL_HEADER = ("FileName", "age", "SPLIT", "SSL_SPLIT")
RANKUP_TABLES = ("meta/train.csv", "meta/test.csv")
RANKUP_HEADER = ("file_name", "label")
UCVME_AGE_SHIFT = 21
RACE_NAMES = ("White", "Black", "Asian", "Indian", "Others")
FILE_NAME_PATTERN = re.compile(
    r"^(?P<age>\d+)_(?P<gender>[01])_(?P<race>[0-4])_\d+\.jpg(\.chip\.jpg)?$",
    re.IGNORECASE,
)
_SPLITS = {"train": "train", "val": "validation", "test": "test"}

LAYOUT = """\
  <data_dir>/                          (default $KERAS_SSR_DATA_DIR/utkface)
    UTKFace/                           the "Aligned&Cropped Faces" images
      1_0_0_20161219140623097.jpg.chip.jpg
      ...
    utkface.csv or FileList.csv        protocol="hpl"
    FileList_ssl_1000_9518.csv         protocol="ucvme_ssl"
    meta/train.csv, meta/test.csv      protocol="rankup"
  (protocol="raw" needs only the images: UTKFace/ or the images directly)"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get UTKFace by hand: download "Aligned&Cropped Faces" (UTKFace.tar.gz) from
https://susanqq.github.io/UTKFace/ and extract it into <data_dir>/UTKFace/.
Protocol tables: HPL's utkface/data/utkface.csv
(github.com/sxq11/Heteroscedastic-Pseudo-Labels), UCVME's DATA_DIR/FileList.csv
and FileList_ssl_1000_9518.csv (github.com/xmed-lab/UCVME), RankUp's meta.zip
(github.com/pm25/regression-datasets, data/utkface/meta.zip, extracted to
<data_dir>/meta/). Use protocol="raw" to label from file names alone."""


def load(
    data_dir=None, protocol="hpl", image_size=64, on_corrupt="skip", age_offset="auto"
):
    """Loads UTKFace as a `RegressionData` of uint8 face images and ages.

    Args:
        data_dir: the UTKFace folder (see `LAYOUT`); default
            `$KERAS_SSR_DATA_DIR/utkface`.
        protocol: `"hpl"` (default; TRAIN/VAL/TEST, ages 21-60, HPL's labeling
            order), `"ucvme_ssl"`, `"rankup"` or `"raw"` (all images labeled
            from their names, no fixed split). See the module docstring.
        image_size: int or `(height, width)`; images are decoded and resized
            (antialiased) to it. 64 suits CPU runs; the papers use 200 / 224.
        on_corrupt: `"skip"` (report each unreadable image and the count in a
            warning, keep the rest) or `"raise"`.
        age_offset: `"auto"` detects UCVME's `age - 21` storage in the CSV
            protocols by comparing with the file-name ages; or an int added to
            the CSV ages (0 or 21).

    Returns:
        A `RegressionData` named `"utkface"`, modality `"image"`, target
        `age` in years, `groups` = race (0-4, `RACE_NAMES`) when every file
        name is well formed, `split_rows` from the protocol (None for "raw").

    Raises:
        DataNotFoundError: if the folder or a protocol file is missing/empty.
        ValueError: on a wrong table header, unknown split names or ages that
            match the file names neither directly nor shifted.
        CorruptImageError: unreadable images with `on_corrupt="raise"`.

    Example:

    >>> data = load("/data/utkface", protocol="hpl", image_size=64)  # doctest: +SKIP
    >>> data.x.shape, len(data.split_rows["train"])  # doctest: +SKIP
    ((16434, 64, 64, 3), 10518)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Unknown UTKFace protocol {protocol!r}; use one of {PROTOCOLS}."
        )
    root = resolve_data_dir(data_dir, NAME)
    rows = _PROTOCOL_READERS[protocol](root, age_offset)
    groups = _races(rows["files"])
    return image_regression_data(
        NAME,
        [rows["image_dir"] / f for f in rows["files"]],
        rows["ages"],
        image_size=image_size,
        on_corrupt=on_corrupt,
        splits=rows.get("splits"),
        labeled_order=rows.get("labeled_order"),
        target_name="age",
        groups=groups,
        group_names=RACE_NAMES,
    )


def parse_file_name(file_name):
    """`(age, gender, race)` from a UTKFace file name, or None if malformed.

    Example:

    >>> parse_file_name("26_1_0_20170116165702615.jpg.chip.jpg")
    (26, 1, 0)
    >>> parse_file_name("39_1_20170116174525125.jpg.chip.jpg") is None
    True
    """
    match = FILE_NAME_PATTERN.match(os.path.basename(str(file_name)))
    if match is None:
        return None
    return int(match["age"]), int(match["gender"]), int(match["race"])


def hpl_labeled_order(num_train):
    """HPL's labeling order of `num_train` TRAIN rows (positions 0..n-1).

    HPL draws `np.random.seed(0); np.random.shuffle(np.arange(n))` and labels
    the first 500 / 1000 / 2000; the same permutation without touching the
    global NumPy seed.
    """
    indices = np.arange(num_train)
    np.random.RandomState(0).shuffle(indices)
    return indices


def _read_raw(root, age_offset):
    del age_offset
    image_dir = root / IMAGE_FOLDER if (root / IMAGE_FOLDER).is_dir() else root
    require_files("UTKFace", image_dir, [""], LAYOUT, MANUAL_DOWNLOAD_INSTRUCTIONS)
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(".jpg"))
    parsed = [parse_file_name(n) for n in names]
    malformed = [n for n, p in zip(names, parsed, strict=True) if p is None]
    if malformed:
        warnings.warn(
            f"UTKFace: {len(malformed)} file name(s) in {image_dir} do not match "
            "[age]_[gender]_[race]_[datetime].jpg[.chip.jpg] and were skipped: "
            f"{', '.join(malformed)}",
            UserWarning,
            stacklevel=3,
        )
    files = [n for n, p in zip(names, parsed, strict=True) if p is not None]
    if not files:
        raise ValueError(
            f"UTKFace: no well-formed image names in {image_dir} (found "
            f"{len(names)} .jpg file(s)).\nExpected layout:\n{LAYOUT}"
        )
    ages = np.array([p[0] for p in parsed if p is not None], dtype="float32")
    return {"image_dir": image_dir, "files": files, "ages": ages}


def _read_hpl(root, age_offset):
    table = next((t for t in HPL_TABLES if (root / t).is_file()), HPL_TABLES[0])
    frame = _read_table(root, table, HPL_HEADER, ("FileName", "age", "SPLIT"))
    path = root / table
    files = frame["FileName"].to_list()
    ages = _ages(path, files, parse_numbers(path, "age", frame["age"]), age_offset)
    splits = split_names(path, "SPLIT", frame["SPLIT"], _SPLITS)
    train = np.flatnonzero(splits == "train")
    return {
        "image_dir": root / IMAGE_FOLDER,
        "files": files,
        "ages": ages,
        "splits": splits,
        "labeled_order": train[hpl_labeled_order(len(train))],
    }


def _read_ucvme_ssl(root, age_offset):
    frame = _read_table(root, UCVME_SSL_TABLE, UCVME_SSL_HEADER, UCVME_SSL_HEADER)
    path = root / UCVME_SSL_TABLE
    files = frame["FileName"].to_list()
    ages = _ages(path, files, parse_numbers(path, "age", frame["age"]), age_offset)
    splits = split_names(path, "SPLIT", frame["SPLIT"], _SPLITS)
    ssl = split_names(
        path,
        "SSL_SPLIT",
        frame["SSL_SPLIT"],
        {"labeled": "labeled", "unlabeled": "unlabeled"},
    )
    train = splits == "train"
    order = np.concatenate(
        [
            np.flatnonzero(train & (ssl == "labeled")),
            np.flatnonzero(train & (ssl == "unlabeled")),
        ]
    )
    return {
        "image_dir": root / IMAGE_FOLDER,
        "files": files,
        "ages": ages,
        "splits": splits,
        "labeled_order": order,
    }


def _read_rankup(root, age_offset):
    del age_offset
    files, ages, splits = [], [], []
    for table, split in zip(RANKUP_TABLES, ("train", "test"), strict=True):
        frame = _read_table(root, table, RANKUP_HEADER, RANKUP_HEADER)
        files += frame["file_name"].to_list()
        ages.append(parse_numbers(root / table, "label", frame["label"]))
        splits += [split] * len(frame)
    return {
        "image_dir": root / IMAGE_FOLDER,
        "files": files,
        "ages": np.concatenate(ages),
        "splits": np.array(splits, dtype=object),
    }


def _read_table(root, table, header, required):
    require_files(
        "UTKFace", root, [table, IMAGE_FOLDER], LAYOUT, MANUAL_DOWNLOAD_INSTRUCTIONS
    )
    return read_checked_table(root / table, required, header)


def _ages(path, files, ages, age_offset):
    """Undoes UCVME's `age - 21` storage (detected from the file names)."""
    if age_offset != "auto":
        return ages + np.float32(age_offset)
    name_ages = np.array(
        [(parse_file_name(f) or (np.nan,))[0] for f in files], dtype="float64"
    )
    known = np.isfinite(name_ages)
    if not known.any():  # no usable names: HPL's ages are 21-60, UCVME's 0-39
        shifted = ages.min() < UCVME_AGE_SHIFT and ages.max() <= 60 - UCVME_AGE_SHIFT
        return ages + np.float32(UCVME_AGE_SHIFT if shifted else 0)
    direct = int((ages[known] == name_ages[known]).sum())
    shifted = int((ages[known] + UCVME_AGE_SHIFT == name_ages[known]).sum())
    offset = UCVME_AGE_SHIFT if shifted > direct else 0
    agree = max(direct, shifted)
    if agree < 0.5 * known.sum():
        raise ValueError(
            f"{path}: the age column matches the file-name ages in {direct} and the "
            f"file-name ages minus {UCVME_AGE_SHIFT} (UCVME's FileList.csv) in "
            f"{shifted} of {int(known.sum())} rows; cannot tell how ages are "
            "stored. Pass age_offset=0 or age_offset=21."
        )
    if agree < known.sum():
        warnings.warn(
            f"{path}: {int(known.sum()) - agree} row(s) have an age that disagrees "
            "with the file name; the table's ages are used.",
            UserWarning,
            stacklevel=4,
        )
    if offset:
        warnings.warn(
            f"{path}: ages are stored as age - {UCVME_AGE_SHIFT} (UCVME's "
            f"FileList.csv); added {UCVME_AGE_SHIFT} back.",
            UserWarning,
            stacklevel=4,
        )
    return ages + np.float32(offset)


def _races(files):
    parsed = [parse_file_name(f) for f in files]
    if any(p is None for p in parsed):
        return None
    return np.array([p[2] for p in parsed], dtype="int32")


_PROTOCOL_READERS = {
    "raw": _read_raw,
    "hpl": _read_hpl,
    "ucvme_ssl": _read_ucvme_ssl,
    "rankup": _read_rankup,
}
