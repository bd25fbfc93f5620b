"""Batched linear students for the PP-SSL experiments, trained in NumPy.

The PP-SSL paper's students are linear, so every run of a setting (methods x
fixed lambdas x seeds) trains at once as one batch of linear models: thousands
of runs in minutes on two CPU cores, with no graph to trace. The update is
exactly `keras_ssr.methods.ppssl.PPSSL`'s on a
`SSRRegressor(keras.layers.Identity())` student (standardised inputs and
targets, mean squared errors, Keras' Adam or plain SGD, lambda by
`adagrad_lambda_step`, eq. 11-12); `tests/test_ppssl_experiments.py` checks it
step by step against `PPSSL.train_step`.
"""

import dataclasses
import math

import numpy as np

from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    DEFAULT_CLOSED_FORM_POINT,
    linear_closed_form_lambda,
)
from keras_ssr.methods.ppssl import adagrad_lambda_step

GROUPS = ("total", "A", "B")  # test MSE is reported per group and in total
ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}  # Keras' defaults


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How the students of one experiment train (the paper's Table S1 / S2).

    Args:
        optimizer: `"adam"` (Keras' Adam) or `"sgd"`.
        learning_rate: step size of the student's optimizer.
        epochs: maximum number of epochs.
        labeled_batch_size: labeled rows per step (`None` or more than the
            labeled rows: the full labeled set every step).
        unlabeled_batch_size: unlabeled rows per step, sampled without
            replacement from a fresh permutation each epoch (`None`: all).
        patience: early stopping: a run stops after this many epochs without
            a lower validation MSE and keeps its best-validation weights
            (`None`: no early stopping, the last weights are kept).
        lambda_diameter: D of PP-SSL's AdaGrad step (eq. 12).
        ssl_weight: weight of the pseudo-label loss of `ssl` (eq. 2).
        ppi_lambda: the constant lambda of `ppi_fixed` (1: plain PPI).
    """

    optimizer: str
    learning_rate: float
    epochs: int
    labeled_batch_size: int | None
    unlabeled_batch_size: int | None
    patience: int | None
    lambda_diameter: float = 1.0
    ssl_weight: float = 1.0
    ppi_lambda: float = 1.0

    def steps_per_epoch(self, num_labeled, num_unlabeled):
        """One pass over the larger of the labeled and unlabeled sets."""
        return max(
            math.ceil(num_labeled / (self.labeled_batch_size or num_labeled)),
            math.ceil(num_unlabeled / (self.unlabeled_batch_size or num_unlabeled)),
        )


@dataclasses.dataclass
class Problem:
    """One seed's standardised arrays for linear students (intercept last).

    `a_*` are standardised features with a column of ones appended, `y_*`
    standardised targets, `t_*` standardised teacher predictions; test
    targets stay in target units. `a_val`/`y_val` may be `None` (no early
    stopping).
    """

    a_l: np.ndarray
    y_l: np.ndarray
    t_l: np.ndarray
    a_u: np.ndarray
    t_u: np.ndarray
    a_val: np.ndarray | None
    y_val: np.ndarray | None
    a_test: np.ndarray
    y_test: np.ndarray
    groups_test: np.ndarray
    scaler: TargetScaler
    teacher_test: np.ndarray

    def closed_form_lambda(self, at=DEFAULT_CLOSED_FORM_POINT, theta0=None):
        """PPI++ closed-form lambda at the point `at` (a name of
        `keras_ssr.methods.ppi_closed_form.CLOSED_FORM_POINTS`; `"current"`
        is the students' initial parameters `theta0`, default zeros)."""
        if at == "current":
            at = np.zeros(self.a_l.shape[1]) if theta0 is None else theta0
        return linear_closed_form_lambda(
            self.a_l[:, :-1], self.y_l, self.t_l, self.a_u[:, :-1], self.t_u, at=at
        )


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training configuration: `kind` and its lambda (or SSL weight).

    kinds: `"fixed"` (constant lambda, PPI++ gradient; 0 is only-labeled),
    `"ssl"` (L_l + value * Lhat_u), `"closed_form"` (lambda per seed from
    `Problem.closed_form_lambda` at the point `at`), `"adaptive"` (PP-SSL
    from `value`).
    """

    name: str
    kind: str
    value: float = 1.0
    at: str = DEFAULT_CLOSED_FORM_POINT


def closed_form_lambdas(problems, theta0=None):
    """`{point: (seeds,)}`: the closed-form lambda of every problem at every
    point of `CLOSED_FORM_POINTS`."""
    return {
        at: np.array([p.closed_form_lambda(at, theta0) for p in problems])
        for at in CLOSED_FORM_POINTS
    }


def _coefficients(specs, closed):
    """`(a, b)`, each `(seeds, runs)`: g = g_l + a * ghat_u - b * ghat_l."""
    num_seeds = len(next(iter(closed.values())))
    a = np.zeros((num_seeds, len(specs)))
    b = np.zeros_like(a)
    for k, spec in enumerate(specs):
        value = closed[spec.at] if spec.kind == "closed_form" else spec.value
        a[:, k] = value
        b[:, k] = 0.0 if spec.kind == "ssl" else value
    return a, b


def stacked(problems, name):
    return np.stack([getattr(p, name) for p in problems])


def _moments(a, y, rows):
    """Per seed `(A^T A / b, A^T y / b)` over the batch `rows` `(S, b)`."""
    if rows is not None:
        a = np.take_along_axis(a, rows[..., None], axis=1)
        y = np.take_along_axis(y, rows, axis=1)
    return np.einsum("sbp,sbq->spq", a, a) / a.shape[1], np.einsum(
        "sbp,sb->sp", a, y
    ) / a.shape[1]


class _BatchSampler:
    """Per-seed batches: fresh permutation each pass, no replacement in a batch."""

    def __init__(self, num_seeds, num_rows, batch_size, rng):
        self.full = batch_size is None or batch_size >= num_rows
        self.num_rows, self.batch_size, self.rng = num_rows, batch_size, rng
        self.shape = (num_seeds, num_rows)
        self.position = num_rows

    def next(self):
        if self.full:
            return None
        if self.position + self.batch_size > self.num_rows:
            self.order = np.argsort(self.rng.random(self.shape), axis=1)
            self.position = 0
        rows = self.order[:, self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return rows


class _Optimizer:
    """Keras' Adam (or SGD) on a `(S, K, p)` block of linear parameters."""

    def __init__(self, kind, learning_rate, shape):
        if kind not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {kind!r}.")
        self.kind, self.lr = kind, learning_rate
        self.m, self.v = np.zeros(shape), np.zeros(shape)
        self.t = np.zeros(shape[:2])

    def step(self, theta, grad, active):
        """Updates `theta` in place where `active` `(S, K)`."""
        if self.kind == "sgd":
            theta -= np.where(active[..., None], self.lr * grad, 0.0)
            return
        b1, b2, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
        mask = active[..., None]
        self.t += active
        self.m = np.where(mask, b1 * self.m + (1 - b1) * grad, self.m)
        self.v = np.where(mask, b2 * self.v + (1 - b2) * grad**2, self.v)
        t = np.maximum(self.t, 1.0)[..., None]
        # Keras casts the Python betas through float32 in the bias corrections.
        b1_power, b2_power = (float(np.float32(b)) ** t for b in (b1, b2))
        alpha = self.lr * np.sqrt(1 - b2_power) / (1 - b1_power)
        theta -= np.where(mask, alpha * self.m / (np.sqrt(self.v) + eps), 0.0)


def _mse_from_moments(theta, gram, cross, mean_sq):
    """Mean squared error of every run from the data moments, `(S, K)`."""
    quad = np.einsum("skp,spq,skq->sk", theta, gram, theta)
    return quad - 2 * np.einsum("skp,sp->sk", theta, cross) + mean_sq[:, None]


@dataclasses.dataclass
class LinearRuns:
    """What `train_linear_runs` returns; arrays are `(seeds, runs, ...)`.

    `theta`: tested parameters (best validation epoch, or last without early
    stopping); `lambdas`: lambda used at every step `(S, K, steps)` (NaN after
    a run stopped); `final_lambda`: lambda at the tested epoch; `best_epoch`;
    `closed_form`: `{point: (S,)}`, the closed-form lambda per seed at every
    point of `CLOSED_FORM_POINTS`; `epochs_run`.
    """

    theta: np.ndarray
    lambdas: np.ndarray
    final_lambda: np.ndarray
    best_epoch: np.ndarray
    closed_form: dict
    steps_per_epoch: int
    epochs_run: int

    @property
    def mean_lambda(self):
        """`(S, K)`: lambda averaged over every step a run trained."""
        return np.nanmean(self.lambdas, axis=-1)


def train_linear_runs(problems, specs, protocol, seed=0, theta0=None, on_step=None):
    """Trains every `RunSpec` on every problem (same shapes) as one batch.

    Every run of a seed sees the same labeled and unlabeled batches (common
    random numbers), so methods differ only in how they combine the three
    gradients g_l, ghat_l and ghat_u, computed from batch moments at each
    run's parameters; adaptive runs then take the AdaGrad step of
    `keras_ssr.methods.ppssl.adagrad_lambda_step`.

    Args:
        problems: `Problem`s with equal array shapes (one per seed).
        specs: `RunSpec`s (see `method_specs`).
        protocol: a `Protocol`.
        seed: seed of the batch sampling.
        theta0: initial parameters `(p,)` (default zeros: the student starts
            at the labeled target mean).
        on_step: optional `f(rows_l, rows_u)` called with each step's batch
            rows `(S, b)` (`None`: the full set), e.g. to replay the batches.

    Returns:
        A `LinearRuns`.
    """
    rng = np.random.default_rng(seed)
    a_l, y_l, t_l = (stacked(problems, n) for n in ("a_l", "y_l", "t_l"))
    a_u, t_u = stacked(problems, "a_u"), stacked(problems, "t_u")
    num_seeds, num_runs, p = len(problems), len(specs), a_l.shape[-1]
    closed = closed_form_lambdas(problems, theta0)
    coef_u, coef_l = _coefficients(specs, closed)
    adaptive = np.array([s.kind == "adaptive" for s in specs])
    lam = np.where(adaptive, coef_u, 0.0)
    accumulator = np.zeros((num_seeds, num_runs))
    theta = np.zeros((num_seeds, num_runs, p))
    if theta0 is not None:
        theta += np.asarray(theta0, "float64")
    optimizer = _Optimizer(protocol.optimizer, protocol.learning_rate, theta.shape)
    labeled = _BatchSampler(num_seeds, a_l.shape[1], protocol.labeled_batch_size, rng)
    unlabeled = _BatchSampler(
        num_seeds, a_u.shape[1], protocol.unlabeled_batch_size, rng
    )
    steps = protocol.steps_per_epoch(a_l.shape[1], a_u.shape[1])
    validation = _validation_moments(problems)
    full_u = _moments(a_u, t_u, None) if unlabeled.full else None
    active = np.ones((num_seeds, num_runs), bool)
    best = {
        "theta": theta.copy(),
        "mse": np.full((num_seeds, num_runs), np.inf),
        "epoch": np.zeros((num_seeds, num_runs), int),
        "lambda": lam.copy(),
        "wait": np.zeros((num_seeds, num_runs), int),
    }
    lambdas = np.full((num_seeds, num_runs, protocol.epochs * steps), np.nan)
    epoch = 0
    for epoch in range(1, protocol.epochs + 1):
        for step in range(steps):
            rows_l, rows_u = labeled.next(), unlabeled.next()
            if on_step is not None:
                on_step(rows_l, rows_u)
            gram_l, cross_l = _moments(a_l, y_l, rows_l)
            _, cross_t = _moments(a_l, t_l, rows_l)
            gram_u, cross_u = full_u or _moments(a_u, t_u, rows_u)
            g_l = 2 * (np.einsum("spq,skq->skp", gram_l, theta) - cross_l[:, None])
            gh_l = g_l + 2 * (cross_l - cross_t)[:, None]
            gh_u = 2 * (np.einsum("spq,skq->skp", gram_u, theta) - cross_u[:, None])
            a = np.where(adaptive, lam, coef_u)[..., None]
            b = np.where(adaptive, lam, coef_l)[..., None]
            grad = g_l + a * gh_u - b * gh_l
            lambdas[:, :, (epoch - 1) * steps + step] = np.where(
                active, a[..., 0], np.nan
            )
            optimizer.step(theta, grad, active)
            d = 2 * np.sum(grad * (gh_u - gh_l), axis=-1)  # eq. 12
            new_lam, new_acc = adagrad_lambda_step(
                lam, accumulator, d, protocol.lambda_diameter
            )
            update = active & adaptive
            lam = np.where(update, np.asarray(new_lam), lam)
            accumulator = np.where(update, np.asarray(new_acc), accumulator)
        active = _early_stopping(
            best, theta, lam, validation, epoch, active, protocol.patience
        )
        if not active.any():
            break
    if validation is None:
        best["theta"], best["lambda"] = theta, lam
        best["epoch"][:] = epoch
    return LinearRuns(
        theta=best["theta"],
        lambdas=lambdas[:, :, : epoch * steps],
        final_lambda=np.where(adaptive, best["lambda"], coef_u),
        best_epoch=best["epoch"],
        closed_form=closed,
        steps_per_epoch=steps,
        epochs_run=epoch,
    )


def _validation_moments(problems):
    if any(p.a_val is None for p in problems):
        return None
    a, y = stacked(problems, "a_val"), stacked(problems, "y_val")
    gram, cross = _moments(a, y, None)
    return gram, cross, np.mean(y**2, axis=1)


def _early_stopping(best, theta, lam, validation, epoch, active, patience):
    """Keeps each run's best-validation state; returns the still-active mask."""
    if validation is None:
        return active
    mse = _mse_from_moments(theta, *validation)
    improved = active & (mse < best["mse"])
    best["mse"] = np.where(improved, mse, best["mse"])
    best["theta"] = np.where(improved[..., None], theta, best["theta"])
    best["lambda"] = np.where(improved, lam, best["lambda"])
    best["epoch"] = np.where(improved, epoch, best["epoch"])
    best["wait"] = np.where(improved, 0, best["wait"] + active)
    if patience is None:
        return active
    return active & (best["wait"] < patience)
