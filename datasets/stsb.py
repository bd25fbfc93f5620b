"""STS-B sentence-pair similarity (0-5): GLUE TSV, STS-B-DIR split, local TFDS.

Protocols:

- `"dir"` (default; the HPL paper's): STS-B-DIR's `train_new.tsv`,
  `dev_new.tsv`, `test_new.tsv` (5,249 / 1,000 / 1,000) -> train / validation /
  test, with HPL's labeling order (`np.random.seed(0)`,
  `np.random.choice(train, k, replace=False)`, i.e. the first k of one seed-0
  permutation of the train rows; HPL labels `int(5249 * ratio)` rows and first
  drops pairs whose NLTK tokenisation is empty, which would shift the order if
  a file had such rows).
- `"glue"`: GLUE's `train.tsv` (5,749) and `dev.tsv` (1,500). GLUE's
  `test.tsv` has no `score` column (its labels are hidden), so it cannot be
  used for training or evaluation and is not read: `dev.tsv` is the test split
  (as STS-B results are usually reported) and there is no validation split.
- `"tfds"`: TFDS `glue/stsb` **already prepared** in a local TFDS data dir
  (`download=False` semantics: read with `tfds.builder_from_directory`, never
  a network call). `train` -> train, `validation` -> test; TFDS's `test` split
  (label -1) is not used, like GLUE's test.tsv.

All TSV files have the GLUE header
`index genre filename year old_index source1 source2 sentence1 sentence2 score`
and are read with `quoting=csv.QUOTE_NONE` (a `"` in a sentence is text).

References:
    - Cer et al., "SemEval-2017 Task 1: Semantic Textual Similarity", 2017.
    - Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for
      Natural Language Understanding", ICLR 2019.
    - Yang et al., "Delving into Deep Imbalanced Regression", ICML 2021
      (STS-B-DIR).
"""

import os
import pathlib

import numpy as np

from datasets.data_files import (
    DataNotFoundError,
    missing_data_message,
    parse_numbers,
    read_checked_table,
    require_files,
    resolve_data_dir,
    split_rows_from_names,
)
from keras_ssr.data.regression_data import RegressionData

NAME = "stsb"
PROTOCOLS = ("dir", "glue", "tfds")
GLUE_HEADER = (
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
    "score",
)
REQUIRED = ("sentence1", "sentence2", "score")
PROTOCOL_FILES = {
    "dir": {
        "train_new.tsv": "train",
        "dev_new.tsv": "validation",
        "test_new.tsv": "test",
    },
    "glue": {"train.tsv": "train", "dev.tsv": "test"},
}
TFDS_NAME = "glue/stsb"
TFDS_SPLITS = {"train": "train", "validation": "test"}

LAYOUT = """\
  <data_dir>/                  (default $KERAS_SSR_DATA_DIR/stsb)
    train_new.tsv dev_new.tsv test_new.tsv    protocol="dir" (STS-B-DIR)
    train.tsv dev.tsv [test.tsv: not used]    protocol="glue"
  protocol="tfds": <data_dir> is a TFDS data dir holding a prepared
    glue/stsb/<version>/ (default $TFDS_DATA_DIR or ~/tensorflow_datasets)"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get STS-B by hand: GLUE's STS-B.zip (https://gluebenchmark.com/tasks, or
download_glue_data.py) extracted into <data_dir> gives train.tsv/dev.tsv/test.tsv.
STS-B-DIR's train_new.tsv/dev_new.tsv/test_new.tsv: github.com/YyzHarry/
imbalanced-regression (sts-b-dir/glue_data/STS-B) or HPL's sts/glue_data/STS-B
(github.com/sxq11/Heteroscedastic-Pseudo-Labels). For protocol="tfds", run
tfds.load("glue/stsb") once on a machine with internet and copy the prepared
glue/stsb folder into the TFDS data dir."""


def load(data_dir=None, protocol="dir"):
    """Loads STS-B as a `RegressionData` of sentence pairs and scores.

    Args:
        data_dir: the STS-B folder (see `LAYOUT`); default
            `$KERAS_SSR_DATA_DIR/stsb`. For `protocol="tfds"` the TFDS data
            dir (default `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        protocol: `"dir"`, `"glue"` or `"tfds"` (see the module docstring).

    Returns:
        A `RegressionData` named `"stsb"`, modality `"text"`, `x` of shape
        `(n, 2)` (sentence1, sentence2), target `similarity` in [0, 5],
        `split_rows` from the protocol.

    Raises:
        DataNotFoundError: if a protocol file (or the prepared TFDS data) is
            missing.
        ValueError: on a wrong header (naming file, expected and found
            columns) or a non-numeric score.

    Example:

    >>> data = load("/data/glue_data/STS-B", protocol="dir")  # doctest: +SKIP
    >>> data.x.shape  # doctest: +SKIP
    (7249, 2)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Unknown STS-B protocol {protocol!r}; use one of {PROTOCOLS}."
        )
    if protocol == "tfds":
        pairs, scores, splits = _read_tfds(data_dir)
        order = None
    else:
        pairs, scores, splits = _read_tsv_files(data_dir, PROTOCOL_FILES[protocol])
        order = None
        if protocol == "dir":
            train = np.flatnonzero(splits == "train")
            order = train[np.random.RandomState(0).permutation(len(train))]
    return RegressionData(
        x=pairs,
        y=scores,
        feature_names=("sentence1", "sentence2"),
        name=NAME,
        target_name="similarity",
        modality="text",
        split_rows=split_rows_from_names(splits, order),
    )


def read_glue_tsv(path):
    """Reads one GLUE STS-B TSV file with a score column.

    Returns:
        `(pairs, scores)`: object array `(n, 2)` of str and float32 `(n,)`.

    Raises:
        ValueError: on a wrong header (e.g. GLUE's test.tsv, which has no
            `score`) or a non-numeric score, naming the file.
    """
    frame = read_checked_table(path, REQUIRED, GLUE_HEADER, sep="\t", quote_none=True)
    pairs = frame[["sentence1", "sentence2"]].to_numpy(dtype=object)
    return pairs, parse_numbers(path, "score", frame["score"])


def _read_tsv_files(data_dir, files):
    root = resolve_data_dir(data_dir, NAME)
    require_files("STS-B", root, list(files), LAYOUT, MANUAL_DOWNLOAD_INSTRUCTIONS)
    parts = [(read_glue_tsv(root / f), split) for f, split in files.items()]
    pairs = np.concatenate([p for (p, _), _ in parts])
    scores = np.concatenate([s for (_, s), _ in parts])
    splits = np.concatenate([[split] * len(s) for (_, s), split in parts])
    return pairs, scores, splits.astype(object)


def _tfds_data_dir(data_dir):
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    return pathlib.Path(
        os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    ).expanduser()


def _read_tfds(data_dir):
    import tensorflow_datasets as tfds

    root = _tfds_data_dir(data_dir)
    prepared = sorted(
        (root / TFDS_NAME).glob("*/dataset_info.json"),
        key=lambda p: tuple(int(v) for v in p.parent.name.split(".") if v.isdigit()),
    )
    if not prepared:
        raise DataNotFoundError(
            missing_data_message(
                "STS-B (TFDS glue/stsb)",
                root,
                [root / TFDS_NAME / "<version>/dataset_info.json"],
                LAYOUT,
                MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
        )
    builder = tfds.builder_from_directory(str(prepared[-1].parent))
    pairs, scores, splits = [], [], []
    for tfds_split, split in TFDS_SPLITS.items():
        part = tfds.as_numpy(builder.as_dataset(split=tfds_split, batch_size=-1))
        order = np.argsort(part["idx"], kind="stable")
        pairs.append(
            np.stack(
                [_texts(part["sentence1"][order]), _texts(part["sentence2"][order])],
                axis=1,
            )
        )
        scores.append(part["label"][order].astype("float32"))
        splits += [split] * len(order)
    return (
        np.concatenate(pairs),
        np.concatenate(scores),
        np.array(splits, dtype=object),
    )


def _texts(values):
    return np.array([v.decode("utf-8") for v in values], dtype=object)
