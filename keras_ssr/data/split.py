"""`SSRSplit`: disjoint labeled / unlabeled / validation / test index sets."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SSRSplit:
    """Row indices of the four disjoint parts of a semi-supervised split.

    The training part is `labeled + unlabeled`; validation and test are held
    out first, so the same seed gives the same test set for every label ratio.

    Args:
        labeled: indices of labeled training rows.
        unlabeled: indices of training rows whose labels are hidden.
        validation: indices of the validation rows (model selection).
        test: indices of the test rows.

    Example:

    >>> split = SSRSplit.from_size(1000, label_ratio=0.1, seed=0)
    >>> len(split.labeled), len(split.unlabeled), len(split.test)
    (70, 630, 200)
    """

    labeled: np.ndarray
    unlabeled: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    @classmethod
    def from_size(
        cls,
        num_rows,
        label_ratio=None,
        num_labels=None,
        validation_ratio=0.1,
        test_ratio=0.2,
        seed=0,
    ):
        """Draws a split of `num_rows` rows, deterministic per `seed`.

        Args:
            num_rows: number of rows in the dataset.
            label_ratio: fraction in (0, 1] of the training part that is labeled.
            num_labels: number of labeled rows instead of `label_ratio`.
            validation_ratio: fraction of all rows held out for validation.
            test_ratio: fraction of all rows held out for test.
            seed: seed of the permutation.
        """
        num_val = int(round(validation_ratio * num_rows))
        num_test = int(round(test_ratio * num_rows))
        num_train = num_rows - num_val - num_test
        if num_val < 0 or num_test < 0 or num_train <= 0:
            raise ValueError(
                f"validation_ratio={validation_ratio} and test_ratio={test_ratio} "
                f"leave no training rows out of {num_rows}."
            )
        num_labeled = resolve_num_labels(num_train, label_ratio, num_labels)
        order = np.random.default_rng(seed).permutation(num_rows)
        test, validation, train = np.split(order, [num_test, num_test + num_val])
        return cls(
            labeled=np.sort(train[:num_labeled]),
            unlabeled=np.sort(train[num_labeled:]),
            validation=np.sort(validation),
            test=np.sort(test),
        )

    @classmethod
    def from_protocol(cls, split_rows, label_ratio=None, num_labels=None, seed=0):
        """A split whose train/validation/test parts a dataset protocol fixes.

        The labeled rows are the first k of `split_rows["labeled_order"]` when
        the protocol defines that order (then every seed gets the same labeled
        set, as in the HPL paper's UTKFace subsets), otherwise the first k of a
        seeded permutation of the train rows.

        Args:
            split_rows: dict of index arrays `train`, `validation`, `test` and
                optionally `labeled_order` (see `RegressionData.split_rows`).
            label_ratio: fraction in (0, 1] of the train rows that is labeled.
            num_labels: number of labeled rows instead of `label_ratio`.
            seed: seed of the permutation when there is no `labeled_order`.

        Example:

        >>> rows = {"train": np.arange(10), "validation": [10], "test": [11]}
        >>> SSRSplit.from_protocol(rows, num_labels=3, seed=0).sizes()["labeled"]
        3
        """
        train = np.asarray(split_rows["train"], dtype="int64")
        num_labeled = resolve_num_labels(len(train), label_ratio, num_labels)
        order = split_rows.get("labeled_order")
        if order is None:
            order = np.random.default_rng(seed).permutation(train)
        order = np.asarray(order, dtype="int64")
        return cls.from_parts(
            np.sort(order[:num_labeled]),
            np.sort(order[num_labeled:]),
            np.sort(np.asarray(split_rows["validation"], dtype="int64")),
            np.sort(np.asarray(split_rows["test"], dtype="int64")),
        )

    @classmethod
    def from_parts(cls, labeled, unlabeled, validation, test):
        """Builds a split from given index arrays, checking they are disjoint."""
        parts = {
            "labeled": labeled,
            "unlabeled": unlabeled,
            "validation": validation,
            "test": test,
        }
        parts = {k: np.asarray(v, dtype="int64") for k, v in parts.items()}
        seen = np.concatenate(list(parts.values()))
        if len(np.unique(seen)) != len(seen):
            raise ValueError("Split parts overlap: every row may be in one part only.")
        if len(parts["labeled"]) == 0:
            raise ValueError("The labeled part is empty: give at least one label.")
        return cls(**parts)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            array = np.asarray(getattr(self, field.name), dtype="int64")
            object.__setattr__(self, field.name, array)

    @property
    def train(self):
        """All training rows (labeled and unlabeled), sorted."""
        return np.sort(np.concatenate([self.labeled, self.unlabeled]))

    def sizes(self):
        """Part name -> number of rows."""
        return {f.name: len(getattr(self, f.name)) for f in dataclasses.fields(self)}


def resolve_num_labels(num_train, label_ratio=None, num_labels=None):
    """Turns a label ratio or a label count into a checked label count.

    Args:
        num_train: number of training rows (labeled + unlabeled).
        label_ratio: fraction in (0, 1] of the training rows to label.
        num_labels: number of rows to label, 1 <= num_labels <= num_train.
    """
    if (label_ratio is None) == (num_labels is None):
        raise ValueError("Give exactly one of label_ratio and num_labels.")
    if num_labels is not None:
        if not 1 <= int(num_labels) <= num_train:
            raise ValueError(
                f"num_labels={num_labels} is outside [1, {num_train}]: the training "
                f"part has {num_train} rows. Use a smaller --num-labels."
            )
        return int(num_labels)
    if not 0.0 < float(label_ratio) <= 1.0:
        raise ValueError(
            f"label_ratio={label_ratio} is outside (0, 1]: give the fraction of "
            "training rows that keep their label, e.g. 0.05 for 5 %."
        )
    return max(1, int(round(label_ratio * num_train)))


def with_validation(split_rows, validation_ratio, seed):
    """`split_rows` with a validation part for model selection.

    Protocols without one (RankUp's UTKFace, GLUE STS-B: train and test only)
    get `validation_ratio` of their train rows, drawn with `seed`, so the test
    rows are never used to pick the best epoch. The protocol's labeling order
    keeps its order, minus the rows moved to validation.
    """
    if len(split_rows["validation"]):
        return split_rows
    train = np.asarray(split_rows["train"])
    count = max(1, int(round(validation_ratio * len(train))))
    if count >= len(train):
        raise ValueError(
            f"the protocol has no validation rows and {len(train)} train rows: "
            "too few to hold out a validation part."
        )
    validation = np.random.default_rng(seed + 2).permutation(train)[:count]
    rows = dict(split_rows, validation=np.sort(validation))
    rows["train"] = np.setdiff1d(train, validation)
    order = split_rows.get("labeled_order")
    if order is not None:
        rows["labeled_order"] = np.asarray(order)[~np.isin(order, validation)]
    return rows


def holdout_split(labeled, fraction, seed):
    """`(labeled rows, hold-out rows)`: with `fraction` 0 the hold-out stream
    samples the labeled rows independently (`None`); otherwise that fraction of
    the labeled rows is set aside as a separate hold-out split."""
    if not fraction:
        return labeled, None
    if not 0 < fraction < 1:
        raise ValueError(f"holdout_fraction={fraction} must be in [0, 1).")
    count = max(1, int(round(fraction * len(labeled))))
    if count >= len(labeled):
        raise ValueError(
            f"holdout_fraction={fraction} leaves no labeled rows out of "
            f"{len(labeled)}: use a smaller --holdout-fraction or more labels."
        )
    order = np.random.default_rng(seed + 1).permutation(labeled)
    return np.sort(order[count:]), np.sort(order[:count])
