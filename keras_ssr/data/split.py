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
    def from_protocol(
        cls, split_rows, label_ratio=None, num_labels=None, seed=0, has_target=None
    ):
        """A split whose train/validation/test parts a dataset protocol fixes.

        The labeled rows are the first k of `split_rows["labeled_order"]` when
        the protocol defines that order (then every seed gets the same labeled
        set, as in the HPL paper's UTKFace subsets), otherwise the first k of a
        seeded permutation of the train rows.

        With `has_target` (data with missing targets, e.g. a user's table with
        a split column), only train rows with a target can be labeled (k counts
        among them) and train rows without one are always unlabeled; a
        validation or test row without a target is refused, naming the rows.

        Args:
            split_rows: dict of index arrays `train`, `validation`, `test` and
                optionally `labeled_order` (see `RegressionData.split_rows`).
            label_ratio: fraction in (0, 1] of the train rows (with a target)
                that is labeled.
            num_labels: number of labeled rows instead of `label_ratio`. With
                `has_target` given and neither set, every train row with a
                target is labeled.
            seed: seed of the permutation when there is no `labeled_order`.
            has_target: optional bool array over all rows
                (`RegressionData.has_target`).

        Example:

        >>> rows = {"train": np.arange(10), "validation": [10], "test": [11]}
        >>> SSRSplit.from_protocol(rows, num_labels=3, seed=0).sizes()["labeled"]
        3
        """
        train = np.asarray(split_rows["train"], dtype="int64")
        validation = np.sort(np.asarray(split_rows["validation"], dtype="int64"))
        test = np.sort(np.asarray(split_rows["test"], dtype="int64"))
        order = split_rows.get("labeled_order")
        if order is None:
            order = np.random.default_rng(seed).permutation(train)
        order = np.asarray(order, dtype="int64")
        no_target = order[:0]
        if has_target is not None:
            has_target = np.asarray(has_target, dtype=bool)
            check_held_out_targets({"validation": validation, "test": test}, has_target)
            no_target = order[~has_target[order]]
            order = order[has_target[order]]
        elif label_ratio is None and num_labels is None:
            resolve_num_labels(len(train))  # raises: give one of the two
        num_labeled = _num_labeled(len(order), label_ratio, num_labels)
        return cls.from_parts(
            np.sort(order[:num_labeled]),
            np.sort(np.concatenate([order[num_labeled:], no_target])),
            validation,
            test,
        )

    @classmethod
    def from_targets(
        cls,
        has_target,
        label_ratio=None,
        num_labels=None,
        validation_ratio=0.1,
        test_ratio=0.2,
        seed=0,
    ):
        """A seeded split of data where some rows have no target.

        Validation and test are drawn from the rows with a target (their
        fractions are of those rows); the other rows with a target are the
        labeled rows, optionally subsampled to `label_ratio` / `num_labels`
        (the rest of them become unlabeled, their targets hidden); rows
        without a target are always unlabeled. When every row has a target
        this is exactly `from_size(len(has_target), ...)`.

        Args:
            has_target: bool array `(n,)` (`RegressionData.has_target`).
            label_ratio: fraction in (0, 1] of the training rows with a target
                that keeps its label.
            num_labels: number of labeled rows instead of `label_ratio`.
                Neither: every training row with a target is labeled (the
                label ratio comes from the data).
            validation_ratio: fraction of the rows with a target held out for
                validation.
            test_ratio: fraction of the rows with a target held out for test.
            seed: seed of the permutation.

        Example:

        >>> has_target = np.arange(10) < 6
        >>> split = SSRSplit.from_targets(has_target, validation_ratio=0.2,
        ...                               test_ratio=0.2, seed=0)
        >>> split.sizes()
        {'labeled': 4, 'unlabeled': 4, 'validation': 1, 'test': 1}
        """
        targeted = np.flatnonzero(np.asarray(has_target, dtype=bool))
        if targeted.size == 0:
            raise ValueError("No row has a target: at least one labeled row is needed.")
        count = len(targeted)
        num_val = int(round(validation_ratio * count))
        num_test = int(round(test_ratio * count))
        if num_val < 0 or num_test < 0 or num_val + num_test >= count:
            raise ValueError(
                f"validation_ratio={validation_ratio} and test_ratio={test_ratio} "
                f"leave no labeled training rows out of the {count} rows with a "
                "target: lower the ratios or give more rows a target."
            )
        order = targeted[np.random.default_rng(seed).permutation(count)]
        test, validation, pool = np.split(order, [num_test, num_test + num_val])
        num_labeled = _num_labeled(len(pool), label_ratio, num_labels)
        untargeted = np.flatnonzero(~np.asarray(has_target, dtype=bool))
        return cls.from_parts(
            np.sort(pool[:num_labeled]),
            np.sort(np.concatenate([pool[num_labeled:], untargeted])),
            np.sort(validation),
            np.sort(test),
        )

    @classmethod
    def from_data(
        cls,
        data,
        label_ratio=None,
        num_labels=None,
        validation_ratio=0.1,
        test_ratio=0.2,
        seed=0,
        split_rows=None,
    ):
        """The split of a `RegressionData`, whatever kind of split it has.

        `from_protocol` on `split_rows` (default `data.split_rows`) when the
        data fixes its train/validation/test rows, else `from_targets`; rows
        without a target (`data.has_target`) are unlabeled-only in both. A
        fixed split without validation rows gets `validation_ratio` of its
        train rows with a target (`with_validation_rows`).

        Args:
            data: a `RegressionData`.
            label_ratio, num_labels: see `from_targets`; neither means every
                training row with a target is labeled.
            validation_ratio: fraction of the rows with a target held out for
                validation (of the fixed split's train rows when it has none).
            test_ratio: fraction of the rows with a target held out for test
                (only without a fixed split).
            seed: seed of the draw.
            split_rows: a fixed split to use instead of `data.split_rows`
                (e.g. the protocol's with a validation part added).
        """
        split_rows = data.split_rows if split_rows is None else split_rows
        if split_rows is not None:
            rows = with_validation_rows(
                split_rows, validation_ratio, seed, data.has_target
            )
            return cls.from_protocol(
                rows, label_ratio, num_labels, seed, has_target=data.has_target
            )
        return cls.from_targets(
            data.has_target, label_ratio, num_labels, validation_ratio, test_ratio, seed
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

    def all_labeled(self, has_target=None):
        """This split with every training row that has a target labeled
        (the fully supervised upper bound); rows without one stay unlabeled."""
        train = self.train
        keep = np.ones(len(train), bool) if has_target is None else has_target[train]
        return SSRSplit(train[keep], train[~keep], self.validation, self.test)


def _num_labeled(num_pool, label_ratio, num_labels):
    """All of the pool without a ratio or count, else `resolve_num_labels`."""
    if label_ratio is None and num_labels is None:
        if num_pool == 0:
            raise ValueError("No training row has a target: nothing to label.")
        return num_pool
    return resolve_num_labels(num_pool, label_ratio, num_labels)


def check_held_out_targets(parts, has_target, prefix=""):
    """Refuses validation/test rows without a target, naming them.

    Args:
        parts: dict part name -> row indices, e.g. `{"test": [3, 4]}`.
        has_target: bool array over all rows.
        prefix: start of the message, e.g. the data set's name.
    """
    for name, rows in parts.items():
        rows = np.asarray(rows, dtype="int64")
        missing = rows[~has_target[rows]]
        if missing.size:
            raise ValueError(
                f"{prefix}{missing.size} {name} row(s) have no target: rows "
                f"{shown_rows(missing)}. Rows without a target can only be "
                "training rows (unlabeled): move them to train or give them a "
                "target."
            )


def shown_rows(rows, limit=10):
    """`"4, 17"`, or the first `limit` and `"and N more"`, for an index list."""
    text = ", ".join(str(r) for r in rows[:limit])
    return text + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def with_validation_rows(split_rows, validation_ratio, seed, has_target=None):
    """`split_rows` with a validation part drawn from its train rows if empty.

    Protocols without validation rows (RankUp's UTKFace, GLUE STS-B) get
    `validation_ratio` of their train rows (with a target), drawn with
    `seed + 2`, so test rows never pick the best epoch; a labeling order keeps
    its order minus the moved rows.
    """
    if len(split_rows["validation"]):
        return split_rows
    train = np.asarray(split_rows["train"], dtype="int64")
    pool = train if has_target is None else train[has_target[train]]
    count = max(1, int(round(validation_ratio * len(pool))))
    if count >= len(pool):
        raise ValueError(
            f"the split has no validation rows and {len(pool)} train rows with a "
            "target: too few to hold out a validation part."
        )
    validation = np.random.default_rng(seed + 2).permutation(pool)[:count]
    rows = dict(split_rows, validation=np.sort(validation))
    rows["train"] = np.setdiff1d(train, validation)
    order = split_rows.get("labeled_order")
    if order is not None:
        rows["labeled_order"] = np.asarray(order)[~np.isin(order, validation)]
    return rows


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
