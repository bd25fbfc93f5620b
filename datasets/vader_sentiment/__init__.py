"""VADER sentiment-intensity ratings: 23,703 texts with a continuous human score.

Each text carries the mean of about 20 independent human ratings of its
sentiment intensity on a -4 (extremely negative) .. +4 (extremely positive)
scale. The ground-truth files are vendored unchanged (see `LICENSE.md`) from the
`vaderSentiment` 3.3.2 sdist on PyPI, so the benchmark runs offline.

References:
    - Hutto and Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment
      Analysis of Social Media Text", ICWSM 2014.
"""

import io
import pathlib
import tarfile

import numpy as np

from keras_ssr.data.regression_data import RegressionData

DATA_PATH = pathlib.Path(__file__).parent / "hutto_ICWSM_2014_GroundTruth.tar.xz"
# Group id -> (group name, ground-truth file in the archive, expected rows).
SOURCES = (
    ("tweets", "tweets_GroundTruth.txt", 4200),
    ("movies", "movieReviewSnippets_GroundTruth.txt", 10605),
    ("nyt", "nytEditorialSnippets_GroundTruth.txt", 5190),
    ("amazon", "amazonReviewSnippets_GroundTruth.txt", 3708),
)
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
TARGET_NAME = "sentiment_intensity"


def load(split_seed=0):
    """Loads the VADER ratings: 23,703 single texts, target in [-4, 4].

    The split is fixed: within every source, a `split_seed` permutation puts
    80 % of the rows in `train`, 10 % in `validation` and 10 % in `test`, so the
    four sources keep their proportions in every part.

    Args:
        split_seed: seed of the fixed train/validation/test split.

    Returns:
        A text `RegressionData` named `"vader_sentiment"`: `x` the raw texts
        (object array of str, shape `(23703,)`), `y` the mean human rating,
        `groups` the source (`group_names` = tweets, movies, nyt, amazon) and
        `split_rows` the fixed split.

    Raises:
        FileNotFoundError: if the vendored archive is missing.
        ValueError: if a file in it is malformed (message names file and line).

    Example:

    >>> data = load()
    >>> data.x.shape, data.modality, data.group_names[0]
    ((23703,), 'text', 'tweets')
    """
    texts, scores, groups = read_ground_truth(DATA_PATH)
    return RegressionData(
        x=texts,
        y=scores,
        feature_names=("text",),
        name="vader_sentiment",
        target_name=TARGET_NAME,
        groups=groups,
        group_names=tuple(name for name, _, _ in SOURCES),
        modality="text",
        split_rows=stratified_split(groups, split_seed),
    )


def read_ground_truth(path):
    """Reads `(texts, scores, groups)` from the ground-truth tar archive."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VADER ground-truth archive not found: expected {path}. Restore it with "
            "`pip download --no-deps --no-binary :all: vaderSentiment==3.3.2`: the "
            "sdist's additional_resources/hutto_ICWSM_2014.tar.gz holds the four "
            "*_GroundTruth.txt files; pack them with `tar cJf` into that path."
        )
    texts, scores, groups = [], [], []
    with tarfile.open(path, "r:xz") as archive:
        for group, (_, member, expected) in enumerate(SOURCES):
            rows = _parse_ground_truth(archive, member)
            if len(rows) != expected:
                raise ValueError(
                    f"{path}:{member}: expected {expected} rows, got {len(rows)}."
                )
            texts += [text for _, text in rows]
            scores += [score for score, _ in rows]
            groups += [group] * len(rows)
    return (
        np.asarray(texts, dtype=object),
        np.asarray(scores, dtype="float32"),
        np.asarray(groups, dtype="int32"),
    )


def _parse_ground_truth(archive, member):
    """`[(score, text)]` of one tab-separated `id, mean score, text` file."""
    try:
        raw = archive.extractfile(member).read()
    except KeyError as error:
        raise ValueError(f"{archive.name}: no member {member!r}.") from error
    rows = []
    for number, line in enumerate(io.StringIO(raw.decode("utf-8")), start=1):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 3:
            raise ValueError(
                f"{member}, line {number}: expected 3 tab-separated fields "
                f"(id, mean score, text), got {len(fields)}."
            )
        rows.append((float(fields[1]), fields[2]))
    return rows


def stratified_split(groups, seed=0):
    """Fixed 80/10/10 train/validation/test rows, stratified by `groups`."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in SPLIT_FRACTIONS}
    for group in np.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == group))
        n_train = round(SPLIT_FRACTIONS["train"] * len(rows))
        n_val = round(SPLIT_FRACTIONS["validation"] * len(rows))
        parts["train"].append(rows[:n_train])
        parts["validation"].append(rows[n_train : n_train + n_val])
        parts["test"].append(rows[n_train + n_val :])
    return {name: np.sort(np.concatenate(rows)) for name, rows in parts.items()}
