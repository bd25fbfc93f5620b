"""`TargetScaler`: standardises targets on the labeled training set."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TargetScaler:
    """Affine map between target units and standardised units.

    Training runs in standardised units `(y - mean) / std`; the model carries
    `mean` and `std` and de-standardises its outputs, so metrics, tables and
    exports are in target units.

    Args:
        mean: mean of the labeled training targets.
        std: standard deviation of the labeled training targets (1.0 when it is
            zero, e.g. with a single label).

    Example:

    >>> scaler = TargetScaler.fit([1.0, 3.0])
    >>> float(scaler.transform(3.0)), float(scaler.inverse(1.0))
    (1.0, 3.0)
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, targets):
        """Scaler fitted on `targets` (the labeled training targets)."""
        targets = np.asarray(targets, dtype="float64")
        std = float(targets.std())
        return cls(mean=float(targets.mean()), std=std if std > 0 else 1.0)

    def transform(self, y):
        return (np.asarray(y, dtype="float32") - self.mean) / self.std

    def inverse(self, y_std):
        return np.asarray(y_std, dtype="float32") * self.std + self.mean
