"""`RegressionData`: the in-memory form every tabular dataset loader returns."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RegressionData:
    """Features, continuous targets and (optionally) a group id per row.

    Args:
        x: float32 array of shape `(n, d)` with raw (unstandardised) features.
        y: float32 array of shape `(n,)` with targets in their own units.
        feature_names: `d` column names.
        name: dataset name, e.g. `"california_housing"`.
        target_name: name (and unit) of the target.
        groups: optional int array of shape `(n,)`: a group id per row, for
            per-group metrics (PP-SSL's two-group experiments).
        group_names: names of the group ids, index = id.

    Example:

    >>> import numpy as np
    >>> data = RegressionData(
    ...     x=np.zeros((4, 2), "float32"), y=np.arange(4, dtype="float32"),
    ...     feature_names=("a", "b"), name="toy")
    >>> data.num_rows, data.num_features
    (4, 2)
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple
    name: str
    target_name: str = "target"
    groups: np.ndarray | None = None
    group_names: tuple = ()

    def __post_init__(self):
        x = np.asarray(self.x, dtype="float32")
        y = np.asarray(self.y, dtype="float32")
        if x.ndim != 2:
            raise ValueError(
                f"{self.name}: x must be 2-D (rows, features), got {x.shape}."
            )
        if y.shape != (x.shape[0],):
            raise ValueError(
                f"{self.name}: y must have shape ({x.shape[0]},) to match x, "
                f"got {y.shape}."
            )
        if len(self.feature_names) != x.shape[1]:
            raise ValueError(
                f"{self.name}: {len(self.feature_names)} feature names for "
                f"{x.shape[1]} columns."
            )
        _check_finite(self.name, "y (target)", y)
        _check_finite(self.name, "x (features)", x)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if self.groups is not None:
            groups = np.asarray(self.groups, dtype="int32")
            if groups.shape != y.shape:
                raise ValueError(f"{self.name}: groups must have shape {y.shape}.")
            object.__setattr__(self, "groups", groups)

    @property
    def num_rows(self):
        return self.x.shape[0]

    @property
    def num_features(self):
        return self.x.shape[1]


def _check_finite(name, what, values):
    bad = ~np.isfinite(values)
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(r) for r in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        raise ValueError(
            f"{name}: {len(rows)} row(s) have NaN or inf in {what}: "
            f"rows {shown}{more}. Drop or impute these rows before training."
        )
