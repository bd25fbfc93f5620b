"""Synthetic linear regression with a biased minority group (PP-SSL App. D.1).

Generative model, with `rng = np.random.default_rng(seed)` and draws in this
order (so the true model depends only on `seed` and `num_features`):

1. `w ~ N(0, I)` of length `num_features`, then `intercept ~ N(0, 1)`;
2. `X ~ N(0, 1)` of shape `(num_samples, num_features)`;
3. `noise ~ N(0, noise_std**2)` per row;
4. `extra ~ N(bias, noise_std**2)` per row (used only by group B).

`y = X w + intercept + noise`; group B (id 1) = rows whose `X w` lies above
its `group_b_quantile` quantile (the top 20 % by default), and their `y` gets
`+ extra`. Group A (id 0) is the rest. The paper gives the mean (`bias`) of the
extra group-B noise but not its scale: here it uses the same `noise_std` as the
base noise, so group-B residuals have mean `bias` and std
`sqrt(2) * noise_std`.

References:
    - PP-SSL ("Prediction-Powered Semi-Supervised Learning with Online Power
      Tuning"), Section 4.1 and Appendix D.1.
"""

import numpy as np

from keras_ssr.data.regression_data import RegressionData


def load(
    bias=1.0,
    num_samples=2000,
    num_features=10,
    noise_std=1.0,
    group_b_quantile=0.8,
    include_indicator=False,
    seed=0,
):
    """Returns the synthetic two-group data set (see `generate` for the args).

    Example:

    >>> data = load(bias=0.5, seed=3)
    >>> data.x.shape, round(float(data.groups.mean()), 2)
    ((2000, 10), 0.2)
    """
    return generate(**locals())[0]


def generate(
    bias=1.0,
    num_samples=2000,
    num_features=10,
    noise_std=1.0,
    group_b_quantile=0.8,
    include_indicator=False,
    seed=0,
):
    """Generates the data and returns it with the true linear model.

    Args:
        bias: mean of the extra Gaussian noise added to group-B targets (the
            paper sweeps 0.1 ... 5).
        num_samples: number of rows.
        num_features: number of Gaussian features (before the indicator).
        noise_std: std of the base label noise and of the extra group-B noise.
        group_b_quantile: rows whose `X w` exceeds this quantile form group B.
        include_indicator: if True, append a 0/1 group-indicator column
            (feature `"group_indicator"`, true weight 0).
        seed: seed of `np.random.default_rng`; same seed, same arrays.

    Returns:
        `(data, w, intercept)`: a `RegressionData` named
        `"synthetic_two_group"` with `groups` (0 = A, 1 = B), the true weights
        `w` (float64, one per column of `data.x`, 0 for the indicator) and the
        true `intercept` (float). `data.x @ w + intercept` is the oracle
        teacher, exact (up to noise) on group A.

    Example:

    >>> data, w, b = generate(bias=3.0, include_indicator=True, seed=1)
    >>> data.x.shape, w.shape, bool((data.x[:, -1] == data.groups).all())
    ((2000, 11), (11,), True)

    References:
        - PP-SSL, Appendix D.1.
    """
    _check_args(num_samples, num_features, noise_std, group_b_quantile)
    rng = np.random.default_rng(seed)
    w, intercept = _draw_true_model(rng, num_features)
    x = rng.standard_normal((num_samples, num_features))
    noise = rng.normal(0.0, noise_std, num_samples)
    extra = rng.normal(bias, noise_std, num_samples)
    xw = x @ w
    groups = (xw > np.quantile(xw, group_b_quantile)).astype("int32")
    y = xw + intercept + noise + groups * extra
    names = tuple(f"x{i}" for i in range(num_features))
    if include_indicator:
        x = np.concatenate([x, groups[:, None]], axis=1)
        w = np.append(w, 0.0)
        names += ("group_indicator",)
    data = RegressionData(
        x=x,
        y=y,
        feature_names=names,
        name="synthetic_two_group",
        groups=groups,
        group_names=("A", "B"),
    )
    return data, w, intercept


def true_model(seed=0, num_features=10, include_indicator=False):
    """Returns the true `(w, intercept)` that `generate` uses for `seed`.

    Example:

    >>> w, b = true_model(seed=0)
    >>> w.shape
    (10,)
    """
    w, intercept = _draw_true_model(np.random.default_rng(seed), num_features)
    if include_indicator:
        w = np.append(w, 0.0)
    return w, intercept


def _draw_true_model(rng, num_features):
    w = rng.standard_normal(num_features)
    intercept = float(rng.standard_normal())
    return w, intercept


def _check_args(num_samples, num_features, noise_std, group_b_quantile):
    if num_samples < 2 or num_features < 1:
        raise ValueError(
            f"need num_samples >= 2 and num_features >= 1, got {num_samples} "
            f"and {num_features}."
        )
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    if not 0.0 < group_b_quantile < 1.0:
        raise ValueError(f"group_b_quantile must be in (0, 1), got {group_b_quantile}.")
