"""PP-SSL paper experiments: sweeps of teacher quality x methods x seeds.

`python -m experiments.ppssl synthetic` (Appendix D.1, Fig. 1, Table S9: bias
of group B in `--sweep`, with and without the group-indicator feature) and
`python -m experiments.ppssl california` (Appendix E, Fig. 3, Table S2:
teacher pretrained on 51 group-A and n_B group-B rows). Both students are
linear, as in the paper, so every run of a setting (methods x fixed lambdas x
seeds) trains at once as one batch of linear models
(`experiments.ppssl.linear_runs.train_linear_runs`, the same update as
`PPSSL.train_step`, checked step by step in the tests); the plots are in
`experiments.ppssl.plots`.

Outputs in the run directory: `results.json` (config, per-run records with
per-group test MSE, the lambda at the tested epoch and its mean over all
training steps, the closed-form lambdas per seed, aggregates, the lambda
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
from experiments.ppssl.linear_runs import (  # noqa: F401 (public API)
    GROUPS,
    Problem,
    Protocol,
    RunSpec,
    stacked,
    train_linear_runs,
)
from experiments.ppssl.plots import plot_lambda, plot_mse
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    DEFAULT_CLOSED_FORM_POINT,
)
from keras_ssr.models.teacher import Teacher

EXPERIMENTS = ("synthetic", "california")
METHODS = ("only_labeled", "ssl", "ppi_fixed", "ppi_closed_form", "ppssl")
FIXED_LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
SYNTHETIC_BIASES = (0.1, 0.5, 1.0, 2.0, 3.0, 5.0)
CALIFORNIA_NUM_B = (51, 38, 25, 12, 10, 5, 2, 1)


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


def method_specs(
    methods, protocol, fixed_lambdas=(), closed_form_at=(DEFAULT_CLOSED_FORM_POINT,)
):
    """The `RunSpec`s of `methods` plus `fixed_lambda_<l>` for the oracle sweep.

    `ppi_closed_form` is evaluated at the first point of `closed_form_at`;
    every further point adds a run `ppi_closed_form_at_<point>` after it.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    bad = [p for p in closed_form_at if p not in CLOSED_FORM_POINTS]
    if bad or not closed_form_at:
        raise ValueError(
            f"closed_form_at={tuple(closed_form_at)}: use one or more of "
            f"{', '.join(CLOSED_FORM_POINTS)}."
        )
    specs = []
    for method in methods:
        specs += _specs_of(method, protocol, closed_form_at)
    specs += [RunSpec(f"fixed_lambda_{lam:.1f}", "fixed", lam) for lam in fixed_lambdas]
    return specs


def _specs_of(method, protocol, closed_form_at):
    if method == "ppi_closed_form":
        first, *others = closed_form_at
        return [RunSpec(method, "closed_form", at=first)] + [
            RunSpec(f"{method}_at_{at}", "closed_form", at=at) for at in others
        ]
    return [
        {
            "only_labeled": RunSpec("only_labeled", "fixed", 0.0),
            "ssl": RunSpec("ssl", "ssl", protocol.ssl_weight),
            "ppi_fixed": RunSpec("ppi_fixed", "fixed", protocol.ppi_lambda),
            "ppssl": RunSpec("ppssl", "adaptive", 1.0),
        }[method]
    ]


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
    if experiment == "synthetic":
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
    if experiment == "california":
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
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; valid: {EXPERIMENTS}")
    return SYNTHETIC_PROTOCOL if experiment == "synthetic" else CALIFORNIA_PROTOCOL


def run_setting(setting, seeds, specs, protocol):
    """Trains every spec on every seed of one setting.

    Returns `(records, arrays, runs)`: one record per (method, seed) with the
    test MSE per group, the lambda at the tested epoch (`final_lambda`), its
    mean over every step the run trained (`mean_lambda`) and the best epoch,
    plus a `teacher` record per seed that also holds the seed's closed-form
    lambda at every point (`closed_form_lambda_<point>`); the arrays saved to
    `predictions.npz`; and the `LinearRuns`.
    """
    problems = [setting.make(seed) for seed in seeds]
    runs = train_linear_runs(problems, specs, protocol, seed=seeds[0])
    mean_lambda = runs.mean_lambda
    predictions = np.stack([predict(p, runs.theta[i]) for i, p in enumerate(problems)])
    targets = stacked(problems, "y_test")
    groups = stacked(problems, "groups_test")
    records = []
    for i, (seed, problem) in enumerate(zip(seeds, problems, strict=True)):
        base = {"setting": setting.label, "variant": setting.variant}
        base.update(value=setting.value, seed=int(seed))
        teacher = group_mse(problem.teacher_test, targets[i], groups[i])
        closed = {
            f"closed_form_lambda_{at}": float(v[i])
            for at, v in runs.closed_form.items()
        }
        records.append(dict(base, method="teacher", **_mse_fields(teacher), **closed))
        errors = group_mse(predictions[i], targets[i], groups[i])
        for k, spec in enumerate(specs):
            records.append(
                dict(
                    base,
                    method=spec.name,
                    **_mse_fields({g: errors[g][k] for g in GROUPS}),
                    final_lambda=float(runs.final_lambda[i, k]),
                    mean_lambda=float(mean_lambda[i, k]),
                    best_epoch=int(runs.best_epoch[i, k]),
                )
            )
    arrays = {
        "predictions": predictions.astype("float32"),
        "targets": targets,
        "groups": groups,
        "teacher": stacked(problems, "teacher_test"),
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
        for field in _AGGREGATED + [
            f"closed_form_lambda_{p}" for p in CLOSED_FORM_POINTS
        ]:
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


_AGGREGATED = [f"mse_{g}" for g in GROUPS] + ["final_lambda", "mean_lambda"]


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
    """Table S9-style text: per setting, methods x total / A / B test MSE,
    the lambda at the tested epoch and its mean over the training steps, and
    the seed-mean closed-form lambda at every point."""
    lines = []
    shown = [a for a in aggregates if not a["method"].startswith("fixed_lambda_")]
    for setting in dict.fromkeys(a["setting"] for a in shown):
        rows = [a for a in shown if a["setting"] == setting]
        seeds = rows[0]["num_seeds"]
        lines.append(f"\n{experiment}, {setting}: test MSE mean +- s.e., {seeds} seeds")
        header = ["method", "total", "A", "B", "lambda (tested)", "lambda (mean)"]
        body = [
            [a["method"]]
            + [_mean_sem(a, f"mse_{g}") for g in GROUPS]
            + [_mean_text(a, "final_lambda"), _mean_text(a, "mean_lambda")]
            for a in rows
        ]
        widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
        lines += [_row(header, widths), "-+-".join("-" * w for w in widths)]
        lines += [_row(r, widths) for r in body]
        teacher = next((a for a in rows if a["method"] == "teacher"), {})
        closed = [
            f"{p} {teacher[f'closed_form_lambda_{p}_mean']:.2f}"
            for p in CLOSED_FORM_POINTS
            if f"closed_form_lambda_{p}_mean" in teacher
        ]
        if closed:
            lines.append("closed-form lambda (seed mean) at " + ", ".join(closed))
    return "\n".join(lines)


def _row(cells, widths):
    return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))


def _mean_sem(agg, key):
    return f"{agg[key + '_mean']:.3f} +- {agg[key + '_sem']:.3f}"


def _mean_text(agg, key):
    return f"{agg[key + '_mean']:.2f}" if key + "_mean" in agg else ""


def run_experiment(
    experiment,
    seeds,
    methods=METHODS,
    best_fixed_lambda=False,
    values=None,
    protocol=None,
    run_dir="runs/ppssl",
    verbose=1,
    closed_form_at=(DEFAULT_CLOSED_FORM_POINT,),
):
    """Runs a sweep, prints the tables, writes results, predictions and plots.

    Args:
        experiment: `"synthetic"` or `"california"`.
        seeds: seeds (each one a new data draw / split / teacher pool).
        methods: subset of `METHODS`.
        best_fixed_lambda: also train fixed lambda in {0, 0.1, ..., 1} and
            add the `best_fixed_lambda` oracle row (Table S9).
        values: sweep values (biases, or n_B); default the paper's.
        protocol: a `Protocol` (default `default_protocol(experiment)`).
        run_dir: output directory (created).
        verbose: 0 silent, 1 progress and tables.
        closed_form_at: points of `CLOSED_FORM_POINTS` for `ppi_closed_form`
            (the first) and `ppi_closed_form_at_<point>` (the others).

    Returns:
        A dict with `records`, `aggregates`, `trajectories` and file `paths`.
    """
    protocol = protocol or default_protocol(experiment)
    fixed = FIXED_LAMBDAS if best_fixed_lambda else ()
    specs = method_specs(methods, protocol, fixed, closed_form_at)
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
    aggregates = aggregate(records, fixed)
    if verbose:
        print(format_tables(aggregates, experiment))
    config = {
        "experiment": experiment,
        "seeds": [int(s) for s in seeds],
        "methods": [s.name for s in specs],
        "closed_form_at": list(closed_form_at),
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
    """PP-SSL's lambda per step, mean over seeds (at most 500 points), and the
    seed-mean closed-form lambda at every point.

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
        "closed_form_mean": {at: float(v.mean()) for at, v in runs.closed_form.items()},
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
    plot_lambda(
        trajectories, experiment, paths["lambda_plot"], config["closed_form_at"]
    )
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
