"""`RegressionData`: the in-memory form every dataset loader returns."""

import dataclasses

import numpy as np

from keras_ssr.data.split import check_held_out_targets, shown_rows


@dataclasses.dataclass(frozen=True)
class RegressionData:
    """Inputs, continuous targets and (optionally) groups and a fixed split.

    Args:
        x: the raw inputs, by `modality`: `"tabular"`: float32 `(n, d)`
            features; `"image"`: `(n, height, width, channels)` pixels, uint8
            (kept as uint8 to save memory) or float32 in [0, 255];
            `"text"`: strings, `(n,)` single texts or `(n, 2)` sentence pairs.
        y: float32 array of shape `(n,)` with targets in their own units.
        feature_names: `d` column names (tabular); for images and texts a
            free description of the input, e.g. `("pixels",)`.
        name: dataset name, e.g. `"california_housing"`.
        target_name: name (and unit) of the target.
        groups: optional int array of shape `(n,)`: a group id per row, for
            per-group metrics (PP-SSL's two-group experiments).
        group_names: names of the group ids, index = id.
        modality: `"tabular"`, `"image"` or `"text"`.
        split_rows: optional split fixed by the dataset's protocol, a dict with
            index arrays `"train"`, `"validation"`, `"test"` and optionally
            `"labeled_order"`: the training rows in the order the protocol
            labels them (the first k are labeled for k labels, e.g. HPL's seed-0
            shuffle of UTKFace's TRAIN rows). See `SSRSplit.from_protocol`.
        has_target: optional bool array `(n,)`: False marks the rows whose
            target is missing (a user's table with empty target cells). Those
            rows are unlabeled-only: they can never be labeled, validated or
            tested (see `SSRSplit.from_data`), and `y` holds NaN there. Default:
            every row has a target, and a NaN target is refused.
        input_encoder: optional Keras layer that maps the raw inputs (e.g. a
            dict of named table columns) to rows of `x`; it was fitted by the
            loader and encoded `x` (see `keras_ssr.data.table_encoder.TableEncoder`).
            `keras_ssr.export.export_regressor` puts it in front of the
            regressor, so the SavedModel takes the raw inputs.

    Example:

    >>> import numpy as np
    >>> data = RegressionData(
    ...     x=np.zeros((4, 2), "float32"), y=np.arange(4, dtype="float32"),
    ...     feature_names=("a", "b"), name="toy")
    >>> data.num_rows, data.num_features
    (4, 2)

    Rows without a target (NaN) are kept as unlabeled-only rows when
    `has_target` says so:

    >>> y = np.array([1.0, np.nan, 3.0, np.nan], "float32")
    >>> data = RegressionData(
    ...     x=np.zeros((4, 2), "float32"), y=y, feature_names=("a", "b"),
    ...     name="toy", has_target=~np.isnan(y))
    >>> data.num_with_target, data.num_without_target
    (2, 2)
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple
    name: str
    target_name: str = "target"
    groups: np.ndarray | None = None
    group_names: tuple = ()
    modality: str = "tabular"
    split_rows: dict | None = None
    has_target: np.ndarray | None = None
    input_encoder: object = None

    def __post_init__(self):
        x = _checked_inputs(self.name, self.modality, self.x)
        y = np.asarray(self.y, dtype="float32")
        if y.shape != (x.shape[0],):
            raise ValueError(
                f"{self.name}: y must have shape ({x.shape[0]},) to match x, "
                f"got {y.shape}."
            )
        if self.modality == "tabular" and len(self.feature_names) != x.shape[1]:
            raise ValueError(
                f"{self.name}: {len(self.feature_names)} feature names for "
                f"{x.shape[1]} columns."
            )
        has_target = _checked_has_target(self.name, self.has_target, y.shape)
        y = np.where(has_target, y, np.float32(np.nan)).astype("float32")
        _check_finite(
            self.name, "y (target)", y[has_target], np.flatnonzero(has_target)
        )
        object.__setattr__(self, "has_target", has_target)
        if self.input_encoder is not None and self.modality != "tabular":
            raise ValueError(
                f"{self.name}: an input_encoder is for tabular data (it encodes "
                f"raw columns into x), not {self.modality}."
            )
        if x.dtype == np.float32:
            _check_finite(self.name, "x (features)", x)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if self.groups is not None:
            groups = np.asarray(self.groups, dtype="int32")
            if groups.shape != y.shape:
                raise ValueError(f"{self.name}: groups must have shape {y.shape}.")
            object.__setattr__(self, "groups", groups)
        if self.split_rows is not None:
            object.__setattr__(
                self, "split_rows", _checked_split(self, self.split_rows)
            )

    @property
    def num_rows(self):
        return self.x.shape[0]

    @property
    def num_with_target(self):
        """Rows that have a target (may be labeled, validated or tested)."""
        return int(self.has_target.sum())

    @property
    def num_without_target(self):
        """Rows whose target is missing: unlabeled-only rows."""
        return self.num_rows - self.num_with_target

    @property
    def num_features(self):
        return self.x.shape[1]

    @property
    def input_shape(self):
        """Shape of one input row, e.g. `(8,)`, `(28, 28, 1)` or `(2,)`."""
        return tuple(self.x.shape[1:])

    def describe(self):
        """A short report: rows with and without a target, inputs, split.

        Example:

        >>> data = RegressionData(np.zeros((3, 1)), [1, 2, np.nan], ("a",), "t",
        ...     has_target=[True, True, False])
        >>> print(data.describe())
        t: 3 rows, tabular inputs (1,), target 'target'
          2 with a target, 1 without (unlabeled only)
        """
        lines = [
            f"{self.name}: {self.num_rows} rows, {self.modality} inputs "
            f"{self.input_shape}, target {self.target_name!r}",
            f"  {self.num_with_target} with a target, {self.num_without_target} "
            "without (unlabeled only)",
        ]
        if self.groups is not None:
            lines.append(f"  groups: {', '.join(map(str, self.group_names))}")
        if self.split_rows is not None:
            sizes = ", ".join(f"{len(self.split_rows[k])} {k}" for k in _SPLIT_KEYS)
            lines.append(f"  fixed split: {sizes}")
        return "\n".join(lines)


_MODALITY_RANKS = {"tabular": (2,), "image": (4,), "text": (1, 2)}


def _checked_inputs(name, modality, x):
    if modality not in _MODALITY_RANKS:
        raise ValueError(
            f"{name}: unknown modality {modality!r}; use one of "
            f"{', '.join(_MODALITY_RANKS)}."
        )
    if modality == "text":
        x = np.asarray(x, dtype=object)
    elif modality == "image" and np.asarray(x).dtype == np.uint8:
        x = np.asarray(x)
    else:
        x = np.asarray(x, dtype="float32")
    if x.ndim not in _MODALITY_RANKS[modality]:
        shapes = {"tabular": "(rows, features)", "image": "(rows, h, w, c)"}
        raise ValueError(
            f"{name}: {modality} inputs must have shape "
            f"{shapes.get(modality, '(rows,) or (rows, 2)')}, got {x.shape}."
        )
    return x


_SPLIT_KEYS = ("train", "validation", "test")


def _checked_split(data, split_rows):
    missing = [k for k in _SPLIT_KEYS if k not in split_rows]
    if missing:
        raise ValueError(f"{data.name}: split_rows lacks {', '.join(missing)}.")
    rows = {k: np.asarray(v, dtype="int64") for k, v in split_rows.items()}
    everything = np.concatenate([rows[k] for k in _SPLIT_KEYS])
    if len(np.unique(everything)) != len(everything):
        raise ValueError(f"{data.name}: split_rows parts overlap.")
    if everything.size and (everything.min() < 0 or everything.max() >= data.num_rows):
        raise ValueError(f"{data.name}: split_rows index outside [0, {data.num_rows}).")
    check_held_out_targets(
        {k: rows[k] for k in ("validation", "test")}, data.has_target, f"{data.name}: "
    )
    order = rows.get("labeled_order")
    if order is not None and not np.array_equal(np.sort(order), np.sort(rows["train"])):
        raise ValueError(
            f"{data.name}: split_rows['labeled_order'] must be a permutation of "
            "the train rows."
        )
    return rows


def _checked_has_target(name, has_target, shape):
    if has_target is None:
        return np.ones(shape, dtype=bool)
    has_target = np.asarray(has_target)
    if has_target.shape != shape or has_target.dtype != bool:
        raise ValueError(
            f"{name}: has_target must be a bool array of shape {shape}, got "
            f"{has_target.dtype} {has_target.shape}."
        )
    return has_target


def _check_finite(name, what, values, row_ids=None):
    bad = ~np.isfinite(values)
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    if bad.any():
        rows = np.flatnonzero(bad)
        if row_ids is not None:
            rows = row_ids[rows]
        hint = ""
        if what.startswith("y") and np.isnan(values).any():
            hint = (
                " If these rows simply have no target, pass has_target="
                "~np.isnan(y): they become unlabeled-only rows."
            )
        raise ValueError(
            f"{name}: {len(rows)} row(s) have NaN or inf in {what}: "
            f"rows {shown_rows(rows)}. Drop or impute these rows before training."
            + hint
        )
