"""PPI++ power tuning in closed form: the variance-optimal lambda.

PPI++ (Angelopoulos, Duchi and Zrnic, 2023) estimates a parameter from n
labeled and N unlabeled rows with the loss
L_l + lambda * (Lhat_u - Lhat_l) (PP-SSL eq. 4) and picks lambda to minimise
the trace of the estimator's asymptotic covariance. `closed_form_lambda` is
that formula from per-example gradients; `linear_closed_form_lambda` applies
it to a linear model `[x, 1] @ params` with the squared loss, evaluated at
one of the points named in `CLOSED_FORM_POINTS`:

- `"ppi_py"`: the point at which the public ppi_py package computes its lhat
  in `ppi_ols_pointestimate(lam=None)`: least squares of the teacher
  predictions on the unlabeled features plus least squares of the labeled
  residuals y - yhat on the labeled features,
  `(A_u^T A_u)^-1 A_u^T yhat_u + (A_l^T A_l)^-1 A_l^T (y_l - yhat_l)`.
  With this point the lambda equals ppi_py's lhat (`coord=None`, clipped).
  (`ppi_ols_ci(lam=None)` then evaluates the formula a second time, at the
  point estimate tuned with that first lhat; that second value is not
  offered here.)
- `"ppi_minimizer"`: the exact minimiser of the lambda = 1 PPI loss,
  `mean_l l(y) + mean_u l(yhat) - mean_l l(yhat)`, whose normal equations use
  the unlabeled Gram matrix for both parts:
  `(A_u^T A_u / N)^-1 (A_u^T yhat_u / N + A_l^T (y_l - yhat_l) / n)`. It
  equals `"ppi_py"` when the labeled and unlabeled Gram matrices are equal
  (e.g. an intercept-only model) and differs when n is small.
- `"supervised"`: least squares on the labeled rows.
- `"current"`: a model's present parameters; the caller passes them as an
  array (`PPSSL.calibrate_lambda` does).

References:
    Angelopoulos, Duchi and Zrnic, PPI++: Efficient Prediction-Powered
    Inference, 2023 (power tuning); the formulas of ppi_py's
    `ppi_ols_pointestimate`, `_ols_get_stats` and `_calc_lam_glm`; PP-SSL,
    eq. 4 and its PPI++ baseline (Section 4).
"""

import numpy as np

CLOSED_FORM_POINTS = ("ppi_py", "ppi_minimizer", "supervised", "current")
DEFAULT_CLOSED_FORM_POINT = "ppi_py"


def closed_form_lambda(grads, grads_hat, grads_hat_unlabeled, inv_hessian, clip=True):
    """The PPI++ power-tuning lambda from per-example gradients.

    lambda = tr(V C V) / (2 (1 + n/N) tr(V S V)), with
    C = (1/n)(Gc^T Ghc + Ghc^T Gc) from the centred per-example gradients with
    true labels (G) and teacher labels (Gh) on the n labeled rows, S the
    covariance (ddof 1) of the teacher-label gradients over the labeled and the
    N unlabeled rows, and V the inverse Hessian: the formula of ppi_py's
    `_calc_lam_glm` (`optim_mode="overall"`, `coord=None`). All gradients must
    be taken at the same parameters; which ones is the caller's choice (see
    the module docstring).

    Args:
        grads: `(n, p)` per-example gradients with the true labels.
        grads_hat: `(n, p)` per-example gradients with teacher labels.
        grads_hat_unlabeled: `(N, p)` teacher-label gradients, unlabeled rows.
        inv_hessian: `(p, p)` inverse Hessian of the loss.
        clip: clip lambda to [0, 1].

    Returns:
        lambda as a float (0 when the teacher gradients do not vary).

    Example:

    >>> g = np.array([[1.0], [-1.0]])
    >>> closed_form_lambda(g, g, np.array([[1.0], [-1.0]]), np.eye(1))
    0.375
    """
    grads, grads_hat, grads_hat_u = (
        np.asarray(a, dtype="float64").reshape(len(a), -1)
        for a in (grads, grads_hat, grads_hat_unlabeled)
    )
    n, big_n = len(grads), len(grads_hat_u)
    centred, centred_hat = grads - grads.mean(0), grads_hat - grads_hat.mean(0)
    cov = (centred.T @ centred_hat + centred_hat.T @ centred) / n
    var_hat = np.atleast_2d(np.cov(np.concatenate([grads_hat, grads_hat_u]).T))
    v = np.asarray(inv_hessian, dtype="float64")
    denominator = 2.0 * (1.0 + n / big_n) * np.trace(v @ var_hat @ v)
    lam = float(np.trace(v @ cov @ v) / denominator) if denominator > 0 else 0.0
    return float(np.clip(lam, 0.0, 1.0)) if clip else lam


def linear_closed_form_lambda(
    x_l, y_l, yhat_l, x_u, yhat_u, at=DEFAULT_CLOSED_FORM_POINT, clip=True
):
    """`closed_form_lambda` for a linear model `[x, 1] @ params`, squared loss.

    Per-example gradients 2 (a^T params - y) a with a = [x, 1] and the Hessian
    2 mean(a a^T) over the labeled and unlabeled rows together (ppi_py's OLS
    statistics up to the factor 2, which cancels in lambda).

    Args:
        x_l, y_l, yhat_l: labeled features, labels, teacher predictions.
        x_u, yhat_u: unlabeled features and teacher predictions.
        at: parameters `(d + 1,)` (weights then intercept) or a point name:
            `"ppi_py"`, `"ppi_minimizer"` or `"supervised"` (module docstring).
        clip: clip lambda to [0, 1].

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 2))
    >>> y = x.sum(1) + rng.normal(size=200)
    >>> lam = linear_closed_form_lambda(x[:50], y[:50], y[:50], x[50:], y[50:])
    >>> 0.0 <= lam <= 1.0
    True
    """
    a_l, a_u = with_intercept(x_l), with_intercept(x_u)
    y_l, yhat_l, yhat_u = (
        np.asarray(v, "float64").reshape(-1) for v in (y_l, yhat_l, yhat_u)
    )
    params = linear_solution(a_l, y_l, yhat_l, a_u, yhat_u, at)
    hessian = 2.0 * (a_l.T @ a_l + a_u.T @ a_u) / (len(a_l) + len(a_u))
    return closed_form_lambda(
        _linear_grads(a_l, y_l, params),
        _linear_grads(a_l, yhat_l, params),
        _linear_grads(a_u, yhat_u, params),
        np.linalg.pinv(hessian),
        clip=clip,
    )


def linear_solution(a_l, y_l, yhat_l, a_u, yhat_u, at=DEFAULT_CLOSED_FORM_POINT):
    """The linear parameters named by `at` (see the module docstring).

    Args:
        a_l, a_u: labeled and unlabeled design matrices (intercept included).
        y_l, yhat_l, yhat_u: labels, teacher predictions (labeled, unlabeled).
        at: `"ppi_py"`, `"ppi_minimizer"`, `"supervised"`, or parameters
            (returned as a flat float64 array).

    Example:

    >>> a = np.ones((4, 1))
    >>> y, yhat = np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4)
    >>> float(linear_solution(a, y, yhat, a, yhat + 1.0, "ppi_py")[0])
    3.5
    """
    if not isinstance(at, str):
        return np.asarray(at, dtype="float64").reshape(-1)
    if at == "ppi_py":
        return _least_squares(a_u, yhat_u) + _least_squares(a_l, y_l - yhat_l)
    if at == "ppi_minimizer":
        # Zero of the PPI gradient: mean_u a (a^T p - yhat) + mean_l a (yhat - y).
        lhs = a_u.T @ a_u / len(a_u)
        rhs = a_u.T @ yhat_u / len(a_u) + a_l.T @ (y_l - yhat_l) / len(a_l)
        return np.linalg.pinv(lhs) @ rhs
    if at == "supervised":
        return _least_squares(a_l, y_l)
    if at == "current":
        raise ValueError(
            "at='current' means a model's present parameters: pass them as an "
            "array (PPSSL.calibrate_lambda(..., at='current') does this)."
        )
    raise ValueError(
        f"at={at!r}: use parameters or one of {', '.join(CLOSED_FORM_POINTS)}."
    )


def with_intercept(x):
    """`[x, 1]`: the design matrix of a linear model with an intercept."""
    x = np.asarray(x, dtype="float64").reshape(len(x), -1)
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def _least_squares(a, y):
    return np.linalg.lstsq(a, y, rcond=None)[0]


def _linear_grads(a, y, params):
    return 2.0 * a * (a @ params - y)[:, None]
