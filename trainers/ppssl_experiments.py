"""PP-SSL paper experiments: sweeps of teacher quality x methods x seeds.

`python -m trainers.run --experiment ppssl_synthetic` (Appendix D.1, Fig. 1,
Table S9: bias of group B in `--biases`, with and without the group-indicator
feature) and `--experiment ppssl_california` (Appendix E, Fig. 3, Table S2:
teacher pretrained on 51 group-A and n_B group-B rows). Both students are
linear, as in the paper, so every run of a setting (methods x fixed lambdas x
seeds) trains at once as one batch of linear models (`train_linear_runs`):
thousands of runs in minutes on two CPU cores, with no graph to trace. The
trainer implements exactly the update of `keras_ssr.methods.ppssl.PPSSL` on a
`SSRRegressor(keras.layers.Identity())` student (standardised inputs and
targets, mean squared errors, Keras' Adam or plain SGD, lambda by
`adagrad_lambda_step`); `tests/test_ppssl_experiments.py` checks it step by
step against `PPSSL.train_step`.

Outputs in the run directory: `results.json` (config, per-run records with
per-group test MSE and the final/best lambda, aggregates, the lambda
trajectory per epoch), `results.csv`, `predictions.npz` (test predictions of
every run, for independent checks), `mse_<experiment>.png` (MSE against bias
or n_B per group and method) and `lambda_<experiment>.png` (PP-SSL's lambda
against training steps).
"""

import dataclasses
import json
import math
import os
import time

import numpy as np

from datasets import california_housing, synthetic_two_group
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.ppssl import adagrad_lambda_step, linear_closed_form_lambda
from keras_ssr.models.teacher import Teacher

EXPERIMENTS = ("ppssl_synthetic", "ppssl_california")
METHODS = ("only_labeled", "ssl", "ppi_fixed", "ppi_closed_form", "ppssl")
FIXED_LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
SYNTHETIC_BIASES = (0.1, 0.5, 1.0, 2.0, 3.0, 5.0)
CALIFORNIA_NUM_B = (51, 38, 25, 12, 10, 5, 2, 1)
GROUPS = ("total", "A", "B")
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


# Table S1: Adam, lr 1e-3, batch 256 (the 20 labeled rows: full batch), 3000
# epochs, early stopping (patience not stated: 100 epochs here).
SYNTHETIC_PROTOCOL = Protocol("adam", 1e-3, 3000, 256, 256, patience=100)
# Table S2: SGD, lr 0.01, full batch, 1000 epochs. The paper's split leaves no
# validation rows (102 + 16,327 + 4,108 + 102 pretrain of 20,640), so no early
# stopping here: the weights after 1000 epochs are tested.
CALIFORNIA_PROTOCOL = Protocol("sgd", 0.01, 1000, None, None, patience=None)
# California's AveOccup / Population / AveRooms have rows 50-100+ standard
# deviations out: full-batch SGD at lr 0.01 diverges on the raw standardised
# features (a labeled outlier makes the Hessian's top eigenvalue > 100), and a
# linear teacher extrapolates wildly there. Teacher and students therefore see
# standardised features clipped to +-5 (`SSRRegressor(input_clip=5)`); the
# paper does not say how it scaled the features.
CALIFORNIA_INPUT_CLIP = 5.0


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

    def closed_form_lambda(self):
        """PPI++ closed form at the lambda = 1 PPI solution (as `ppi_py`)."""
        return linear_closed_form_lambda(
            self.a_l[:, :-1], self.y_l, self.t_l, self.a_u[:, :-1], self.t_u, at="ppi"
        )


def make_problem(data, labeled, unlabeled, validation, test, teacher, clip=None):
    """Standardises one split as `SSRRegressor` + `TargetScaler` would.

    Inputs are standardised with the mean/std of the training rows (labeled
    and unlabeled) and clipped to `[-clip, clip]` (`SSRRegressor`'s
    `input_clip`), targets and teacher predictions with the mean/std of the
    labeled targets.
    """
    standardize = standardizer(data.x[np.concatenate([labeled, unlabeled])], clip)
    scaler = TargetScaler.fit(data.y[labeled])

    def design(rows):
        z = standardize(data.x[rows])
        return np.concatenate([z, np.ones((len(rows), 1))], axis=1)

    def labels(rows):
        return np.asarray(scaler.transform(data.y[rows]), "float64")

    def teacher_labels(rows):
        return np.asarray(scaler.transform(teacher.predict(data.x[rows])), "float64")

    has_val = validation is not None and len(validation) > 0
    return Problem(
        a_l=design(labeled),
        y_l=labels(labeled),
        t_l=teacher_labels(labeled),
        a_u=design(unlabeled),
        t_u=teacher_labels(unlabeled),
        a_val=design(validation) if has_val else None,
        y_val=labels(validation) if has_val else None,
        a_test=design(test),
        y_test=np.asarray(data.y[test], "float64"),
        groups_test=np.asarray(data.groups[test]),
        scaler=scaler,
        teacher_test=teacher.predict(data.x[test]),
    )


def synthetic_problem(bias, seed, include_indicator, num_labeled=20):
    """Appendix D.1: 2000 rows, 20 labeled, 990 unlabeled, 200 val, 790 test.

    The data (true model, features, noise) depend only on `seed`, so a bias
    sweep changes nothing but the group-B shift. The teacher is the true
    linear model: exact up to noise on group A, off by `bias` on group B.
    """
    data, w, intercept = synthetic_two_group.generate(
        bias=bias, include_indicator=include_indicator, seed=seed
    )
    order = np.random.default_rng(seed + 10_000).permutation(data.num_rows)
    num_train = 1010
    labeled, unlabeled = order[:num_labeled], order[num_labeled:num_train]
    validation, test = order[num_train : num_train + 200], order[num_train + 200 :]
    teacher = Teacher.from_linear(w, intercept)
    return make_problem(data, labeled, unlabeled, validation, test, teacher)


def california_problem(num_b, seed, data=None, num_labeled=102, num_test=4108):
    """Appendix E: 102 labeled, 4,108 test, teacher on 51 A + `num_b` B rows.

    The teacher is least squares on the clipped standardised features of its
    pretrain rows (see `CALIFORNIA_INPUT_CLIP`).

    The teacher's pretrain pool (51 group-A and 51 group-B rows) is drawn
    first and kept out of the student's data for every `num_b`, so an n_B
    sweep changes only the teacher (16,328 unlabeled rows each time).
    """
    data = data or california_housing.load(two_groups=True)
    rng = np.random.default_rng(seed + 20_000)
    pool_a = rng.choice(np.flatnonzero(data.groups == 0), 51, replace=False)
    pool_b = rng.choice(np.flatnonzero(data.groups == 1), 51, replace=False)
    rest = rng.permutation(np.setdiff1d(np.arange(data.num_rows), [*pool_a, *pool_b]))
    test, labeled = rest[:num_test], rest[num_test : num_test + num_labeled]
    unlabeled = rest[num_test + num_labeled :]
    pretrain = np.concatenate([pool_a, pool_b[:num_b]])
    train = np.concatenate([labeled, unlabeled])
    standardize = standardizer(data.x[train], CALIFORNIA_INPUT_CLIP)
    fitted = Teacher.fit_linear(standardize(data.x[pretrain]), data.y[pretrain])
    teacher = Teacher(lambda x: fitted.predict(standardize(x)))
    return make_problem(
        data, labeled, unlabeled, None, test, teacher, CALIFORNIA_INPUT_CLIP
    )


def standardizer(x_train, clip=None):
    """`x -> clip((x - mean) / std)` with the statistics of `x_train`."""
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 0, std, 1.0)
    bound = np.inf if clip is None else float(clip)
    return lambda x: np.clip((np.asarray(x, "float64") - mean) / std, -bound, bound)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training configuration: `kind` and its lambda (or SSL weight).

    kinds: `"fixed"` (constant lambda, PPI++ gradient; 0 is only-labeled),
    `"ssl"` (L_l + value * Lhat_u), `"closed_form"` (lambda per seed from
    `Problem.closed_form_lambda`), `"adaptive"` (PP-SSL from `value`).
    """

    name: str
    kind: str
    value: float = 1.0


def method_specs(methods, protocol, fixed_lambdas=()):
    """The `RunSpec`s of `methods` plus `fixed_lambda_<l>` for the oracle sweep."""
    table = {
        "only_labeled": RunSpec("only_labeled", "fixed", 0.0),
        "ssl": RunSpec("ssl", "ssl", protocol.ssl_weight),
        "ppi_fixed": RunSpec("ppi_fixed", "fixed", protocol.ppi_lambda),
        "ppi_closed_form": RunSpec("ppi_closed_form", "closed_form"),
        "ppssl": RunSpec("ppssl", "adaptive", 1.0),
    }
    unknown = [m for m in methods if m not in table]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {', '.join(table)}")
    specs = [table[m] for m in methods]
    specs += [RunSpec(f"fixed_lambda_{lam:.1f}", "fixed", lam) for lam in fixed_lambdas]
    return specs


def _coefficients(specs, problems):
    """`(a, b)`, each `(seeds, runs)`: g = g_l + a * ghat_u - b * ghat_l."""
    closed = np.array([p.closed_form_lambda() for p in problems])
    a = np.zeros((len(problems), len(specs)))
    b = np.zeros_like(a)
    for k, spec in enumerate(specs):
        value = closed if spec.kind == "closed_form" else spec.value
        a[:, k] = value
        b[:, k] = 0.0 if spec.kind == "ssl" else value
    return a, b, closed


def _stack(problems, name):
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
    `closed_form`: the closed-form lambda per seed; `epochs_run`.
    """

    theta: np.ndarray
    lambdas: np.ndarray
    final_lambda: np.ndarray
    best_epoch: np.ndarray
    closed_form: np.ndarray
    steps_per_epoch: int
    epochs_run: int


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
    a_l, y_l, t_l = (_stack(problems, n) for n in ("a_l", "y_l", "t_l"))
    a_u, t_u = _stack(problems, "a_u"), _stack(problems, "t_u")
    num_seeds, num_runs, p = len(problems), len(specs), a_l.shape[-1]
    coef_u, coef_l, closed = _coefficients(specs, problems)
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
    a, y = _stack(problems, "a_val"), _stack(problems, "y_val")
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


def predict(problem, theta):
    """Test predictions in target units of parameters `theta` `(..., p)`."""
    standardized = np.einsum("np,...p->...n", problem.a_test, theta)
    return standardized * problem.scaler.std + problem.scaler.mean


def group_mse(predictions, targets, groups):
    """`{"total", "A", "B"}` -> MSE of `predictions` `(..., n)`."""
    error = (predictions - targets) ** 2
    out = {"total": error.mean(-1)}
    for gid, name in enumerate(GROUPS[1:]):
        out[name] = error[..., groups == gid].mean(-1)
    return out


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of a sweep: a label, the sweep value and a problem factory."""

    label: str
    value: float
    variant: str
    make: object  # seed -> Problem


def settings(experiment, values=None):
    """The sweep of `experiment`: biases x indicator variants, or n_B values."""
    if experiment == "ppssl_synthetic":
        values = values or SYNTHETIC_BIASES
        return [
            Setting(
                f"bias={v:g} {variant}",
                float(v),
                variant,
                lambda seed, v=v, flag=flag: synthetic_problem(v, seed, flag),
            )
            for variant, flag in (("indicator", True), ("no_indicator", False))
            for v in values
        ]
    if experiment == "ppssl_california":
        data = california_housing.load(two_groups=True)
        values = values or CALIFORNIA_NUM_B
        return [
            Setting(
                f"n_B={int(v)}",
                float(v),
                "california",
                lambda seed, v=int(v): california_problem(v, seed, data),
            )
            for v in values
        ]
    raise ValueError(f"unknown experiment {experiment!r}; valid: {EXPERIMENTS}")


def default_protocol(experiment):
    """The paper's protocol of `experiment` (`Protocol`)."""
    return (
        SYNTHETIC_PROTOCOL if experiment == "ppssl_synthetic" else CALIFORNIA_PROTOCOL
    )


def run_setting(setting, seeds, specs, protocol):
    """Trains every spec on every seed of one setting.

    Returns `(records, arrays)`: one record per (method, seed) with the test
    MSE per group, lambda and best epoch (plus a `teacher` record per seed),
    and the arrays saved to `predictions.npz` and used for the lambda curve.
    """
    problems = [setting.make(seed) for seed in seeds]
    runs = train_linear_runs(problems, specs, protocol, seed=seeds[0])
    predictions = np.stack([predict(p, runs.theta[i]) for i, p in enumerate(problems)])
    targets = _stack(problems, "y_test")
    groups = _stack(problems, "groups_test")
    records = []
    for i, (seed, problem) in enumerate(zip(seeds, problems, strict=True)):
        base = {"setting": setting.label, "variant": setting.variant}
        base.update(value=setting.value, seed=int(seed))
        teacher = group_mse(problem.teacher_test, targets[i], groups[i])
        records.append(dict(base, method="teacher", **_mse_fields(teacher)))
        errors = group_mse(predictions[i], targets[i], groups[i])
        for k, spec in enumerate(specs):
            records.append(
                dict(
                    base,
                    method=spec.name,
                    **_mse_fields({g: errors[g][k] for g in GROUPS}),
                    final_lambda=float(runs.final_lambda[i, k]),
                    best_epoch=int(runs.best_epoch[i, k]),
                    closed_form_lambda=float(runs.closed_form[i]),
                )
            )
    arrays = {
        "predictions": predictions.astype("float32"),
        "targets": targets,
        "groups": groups,
        "teacher": _stack(problems, "teacher_test"),
        "lambdas": _epoch_ends(runs.lambdas, runs.steps_per_epoch),
    }
    return records, arrays, runs


def _mse_fields(errors):
    return {f"mse_{g}": float(errors[g]) for g in GROUPS}


def _epoch_ends(lambdas, steps):
    """lambda used at the last step of every epoch, `(S, K, epochs)`."""
    return lambdas[:, :, steps - 1 :: steps].astype("float32")


def aggregate(records, fixed_lambdas=()):
    """Mean, std and standard error over seeds per (setting, method).

    With `fixed_lambdas`, adds per setting a `best_fixed_lambda` row: the
    fixed lambda with the lowest mean total test MSE (the paper's infeasible
    oracle of Table S9, chosen on test), with that lambda in `lambda`.
    """
    keys = list(dict.fromkeys((r["setting"], r["method"]) for r in records))
    out = []
    for setting, method in keys:
        rows = [r for r in records if r["setting"] == setting and r["method"] == method]
        agg = {k: rows[0][k] for k in ("setting", "variant", "value", "method")}
        agg["num_seeds"] = len(rows)
        for field in [f"mse_{g}" for g in GROUPS] + ["final_lambda"]:
            if field in rows[0]:
                values = np.array([r[field] for r in rows])
                agg[f"{field}_mean"] = float(values.mean())
                agg[f"{field}_std"] = (
                    float(values.std(ddof=1)) if len(rows) > 1 else 0.0
                )
                agg[f"{field}_sem"] = agg[f"{field}_std"] / math.sqrt(len(rows))
        out.append(agg)
    if fixed_lambdas:
        out += best_fixed_rows(out)
    return out


def best_fixed_rows(aggregates):
    """Per setting, the `fixed_lambda_*` aggregate with the lowest total MSE."""
    rows = []
    for setting in dict.fromkeys(a["setting"] for a in aggregates):
        fixed = [
            a
            for a in aggregates
            if a["setting"] == setting and a["method"].startswith("fixed_lambda_")
        ]
        if fixed:
            best = min(fixed, key=lambda a: a["mse_total_mean"])
            rows.append(
                dict(
                    best,
                    method="best_fixed_lambda",
                    lambda_value=best["final_lambda_mean"],
                )
            )
    return rows


def format_tables(aggregates, experiment):
    """Table S9-style text: per setting, methods x total / A / B test MSE."""
    lines = []
    shown = [a for a in aggregates if not a["method"].startswith("fixed_lambda_")]
    for setting in dict.fromkeys(a["setting"] for a in shown):
        rows = [a for a in shown if a["setting"] == setting]
        seeds = rows[0]["num_seeds"]
        lines.append(f"\n{experiment}, {setting}: test MSE mean +- s.e., {seeds} seeds")
        header = ["method", "total", "A", "B", "lambda"]
        body = [
            [a["method"]]
            + [_mean_sem(a, f"mse_{g}") for g in GROUPS]
            + [_lambda_text(a)]
            for a in rows
        ]
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        lines.append(
            " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))
        )
        lines.append("-+-".join("-" * w for w in widths))
        lines += [
            " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body
        ]
    return "\n".join(lines)


def _mean_sem(agg, key):
    return f"{agg[key + '_mean']:.3f} +- {agg[key + '_sem']:.3f}"


def _lambda_text(agg):
    if "final_lambda_mean" not in agg:
        return ""
    return f"{agg['final_lambda_mean']:.2f}"


def run_experiment(
    experiment,
    seeds,
    methods=METHODS,
    best_fixed_lambda=False,
    values=None,
    protocol=None,
    run_dir="runs/ppssl",
    verbose=1,
):
    """Runs a sweep, prints the tables, writes results, predictions and plots.

    Args:
        experiment: `"ppssl_synthetic"` or `"ppssl_california"`.
        seeds: seeds (each one a new data draw / split / teacher pool).
        methods: subset of `METHODS`.
        best_fixed_lambda: also train fixed lambda in {0, 0.1, ..., 1} and
            add the `best_fixed_lambda` oracle row (Table S9).
        values: sweep values (biases, or n_B); default the paper's.
        protocol: a `Protocol` (default `default_protocol(experiment)`).
        run_dir: output directory (created).
        verbose: 0 silent, 1 progress and tables.

    Returns:
        A dict with `records`, `aggregates`, `trajectories` and file `paths`.
    """
    protocol = protocol or default_protocol(experiment)
    specs = method_specs(methods, protocol, FIXED_LAMBDAS if best_fixed_lambda else ())
    os.makedirs(run_dir, exist_ok=True)
    records, arrays, trajectories = [], {}, {}
    for setting in settings(experiment, values):
        start = time.time()
        rows, saved, runs = run_setting(setting, list(seeds), specs, protocol)
        records += rows
        for name, value in saved.items():
            arrays[f"{setting.label}/{name}"] = value
        trajectories[setting.label] = _trajectory(runs, specs, setting.variant)
        if verbose:
            print(
                f"{setting.label}: {len(seeds)} seeds x {len(specs)} runs, "
                f"{runs.epochs_run} epochs, {time.time() - start:.1f} s",
                flush=True,
            )
    aggregates = aggregate(records, FIXED_LAMBDAS if best_fixed_lambda else ())
    if verbose:
        print(format_tables(aggregates, experiment))
    config = {
        "experiment": experiment,
        "seeds": [int(s) for s in seeds],
        "methods": [s.name for s in specs],
        "protocol": dataclasses.asdict(protocol),
    }
    paths = _write(
        run_dir, experiment, config, records, aggregates, arrays, trajectories
    )
    if verbose:
        print("\n" + "\n".join(f"{k}: {v}" for k, v in paths.items()))
    return {
        "records": records,
        "aggregates": aggregates,
        "trajectories": trajectories,
        "paths": paths,
    }


def _trajectory(runs, specs, variant):
    """PP-SSL's lambda per step, mean over seeds (at most 500 points).

    A seed that stopped early keeps its lambda at the stop (forward fill),
    so the mean stays over all seeds.
    """
    names = [s.name for s in specs]
    if "ppssl" not in names:
        return {}
    mean = forward_filled(runs.lambdas[:, names.index("ppssl")]).mean(axis=0)
    stride = max(1, len(mean) // 500)
    return {
        "variant": variant,
        "step": list(range(0, len(mean), stride)),
        "mean_lambda": [float(v) for v in mean[::stride]],
        "closed_form_mean": float(runs.closed_form.mean()),
        "steps_per_epoch": runs.steps_per_epoch,
    }


def forward_filled(values):
    """Each row of `values` with NaNs replaced by the last earlier number."""
    valid = ~np.isnan(values)
    last = np.maximum.accumulate(np.where(valid, np.arange(values.shape[1]), 0), 1)
    return np.take_along_axis(values, last, axis=1)


def _write(run_dir, experiment, config, records, aggregates, arrays, trajectories):
    paths = {
        "json": os.path.join(run_dir, "results.json"),
        "csv": os.path.join(run_dir, "results.csv"),
        "predictions": os.path.join(run_dir, "predictions.npz"),
        "mse_plot": os.path.join(run_dir, f"mse_{experiment}.png"),
        "lambda_plot": os.path.join(run_dir, f"lambda_{experiment}.png"),
    }
    with open(paths["json"], "w") as f:
        json.dump(
            {
                "config": config,
                "records": records,
                "aggregates": aggregates,
                "lambda_trajectories": trajectories,
            },
            f,
            indent=1,
        )
    _write_csv(paths["csv"], records, aggregates)
    np.savez_compressed(paths["predictions"], **arrays)
    plot_mse(aggregates, experiment, paths["mse_plot"])
    plot_lambda(trajectories, experiment, paths["lambda_plot"])
    return paths


def _write_csv(path, records, aggregates):
    import csv

    rows = [dict(r, kind="seed") for r in records]
    rows += [dict(a, kind="mean_std") for a in aggregates]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mse(aggregates, experiment, path):
    """MSE (mean +- s.e.) against bias / n_B, one panel per group and variant."""
    plt = _pyplot()
    shown = [a for a in aggregates if not a["method"].startswith("fixed_lambda_")]
    variants = list(dict.fromkeys(a["variant"] for a in shown))
    methods = list(dict.fromkeys(a["method"] for a in shown))
    fig, axes = plt.subplots(
        len(variants), 3, figsize=(13, 3.6 * len(variants)), squeeze=False
    )
    for row, variant in enumerate(variants):
        for col, group in enumerate(GROUPS):
            ax = axes[row][col]
            for method in methods:
                pts = sorted(
                    (a["value"], a[f"mse_{group}_mean"], a[f"mse_{group}_sem"])
                    for a in shown
                    if a["variant"] == variant and a["method"] == method
                )
                x, y, e = (np.array(v) for v in zip(*pts, strict=True))
                style = "--" if method in ("teacher", "best_fixed_lambda") else "-"
                ax.errorbar(
                    x, y, yerr=e, fmt=style + "o", ms=3, capsize=2, label=method
                )
            ax.set_title(f"{group} ({variant})")
            ax.set_xlabel(
                "bias of group B" if experiment == "ppssl_synthetic" else "n_B"
            )
            ax.set_ylabel("test MSE")
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lambda(trajectories, experiment, path):
    """PP-SSL's lambda (seed mean) against steps: a panel per variant, a line
    per setting, the seed-mean closed-form lambda dotted in the same colour."""
    plt = _pyplot()
    variants = list(dict.fromkeys(t["variant"] for t in trajectories.values() if t))
    fig, axes = plt.subplots(
        1, max(1, len(variants)), figsize=(6 * max(1, len(variants)), 4), squeeze=False
    )
    for ax, variant in zip(axes[0], variants, strict=False):
        for label, traj in trajectories.items():
            if traj and traj["variant"] == variant:
                steps = np.array(traj["step"]) + 1
                line = ax.plot(steps, traj["mean_lambda"], label=label)[0]
                ax.axhline(traj["closed_form_mean"], color=line.get_color(), ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("PP-SSL lambda (mean over seeds)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{experiment} ({variant}); dotted: closed form")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_from_config(config):
    """`python -m trainers.run --experiment ...`: the sweep of a `RunConfig`.

    Uses `config.experiment`, `seeds`, `methods` (the trainer's default
    method list means `METHODS`), `best_fixed_lambda`, `sweep`,
    `experiment_epochs`, `ppi_lambda`, `lambda_diameter`, `output_dir`,
    `run_name` and `verbose`; everything else is the paper's protocol.
    """
    from trainers.config import RunConfig

    methods = METHODS if config.methods == RunConfig.methods else config.methods
    paper = default_protocol(config.experiment)
    protocol = dataclasses.replace(
        paper,
        epochs=config.experiment_epochs or paper.epochs,
        lambda_diameter=config.lambda_diameter,
        ppi_lambda=1.0 if config.ppi_lambda is None else config.ppi_lambda,
    )
    name = config.run_name or f"{config.experiment}_{time.strftime('%Y%m%d-%H%M%S')}"
    return run_experiment(
        config.experiment,
        config.seeds,
        methods=methods,
        best_fixed_lambda=config.best_fixed_lambda,
        values=config.sweep,
        protocol=protocol,
        run_dir=os.path.join(config.output_dir, name),
        verbose=config.verbose,
    )
