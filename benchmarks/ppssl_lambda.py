"""`python -m benchmarks.ppssl_lambda`: why PP-SSL's online lambda falls to ~0.

Diagnostics of the online lambda (eq. 11-12) on the synthetic two-group
protocol (Appendix D.1, with the group indicator), five parts:

`--part drivers`: which of two candidate causes makes the online lambda fall,
as a 2 x 2: labeled rows {fixed (the protocol's 20 rows, a full batch every
step), fresh (20 new rows every step from a 100,000-row pool)} x teacher
{oracle (the true model: its residual at the optimum is independent of the
label noise), informed (the true model plus 0.8 x the row's label noise plus
its own N(0, 0.4^2) error: it knows something the linear student cannot, so
its residual at the optimum is correlated with the label residual)}. Every
cell: Adam lr 1e-3, the same 990 unlabeled rows in batches of 256, no early
stopping, `--steps` steps; printed: the seed-mean lambda at some steps, its
mean over all steps, and the lambda that minimises the expected squared norm
of g(lambda) (what the online update estimates) at the population optimum
theta* (least squares on the 100,000 labeled rows), for fresh batches of 20
labeled and 256 unlabeled rows.

`--part closed_form`: the PPI++ closed-form lambda of the protocol's 20
labeled / 990 unlabeled rows at every point of
`keras_ssr.methods.ppi_closed_form.CLOSED_FORM_POINTS` (`current` = the
students' zero start), seed means, and how far `ppi_py`'s point is from
labeled least squares (the oracle teacher is linear in the features, so the
two coincide: least squares of the teacher on the unlabeled rows is the true
model exactly, and least squares of y - yhat on the labeled rows is then
labeled least squares minus the true model).

`--part drift`: E_u[d_t], the expected AdaGrad slope of lambda over unlabeled
batches (256 of the 990 rows) with the full labeled set (20 rows, as batch 256
gives), split as 2 <g_L + lambda Dbar, Dbar> (the part from the gradient's
mean, which depends on lambda because the labeled rows are fixed) plus
2 lambda tr Var(ghat_u) (the only noise h_t sees; it always pushes lambda
down), at three points: theta = 0, the lambda = 1 PPI solution of the seed's
data (where the first part vanishes) and labeled least squares.

`--part population`: the PPI++ closed-form lambda on large samples (20,000
labeled and 39,000 unlabeled rows) at c * theta*, theta* the population
least-squares solution, c in {0, 0.5, 0.9, 1}: the variance-optimal lambda
away from and at the optimum.

`--part protocol`: PP-SSL's lambda trajectory (seed mean at chosen steps),
its lambda at the best-validation epoch, its mean over all training steps, the
closed-form lambdas, and the test MSE of PP-SSL and of fixed lambdas, for the
paper's protocol (labeled batch 256 = full batch, D = 1) and variants:
D = 0.1, labeled mini-batches of 10 or 5 rows.

Example:

    python -m benchmarks.ppssl_lambda --part drivers --bias 3
"""

import argparse
import dataclasses
import math

import numpy as np

from datasets import synthetic_two_group
from experiments.ppssl import runs as pe
from experiments.ppssl.linear_runs import closed_form_lambdas
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    linear_closed_form_lambda,
    linear_solution,
)
from keras_ssr.models.teacher import Teacher

INFORMED_SHARE, INFORMED_ERROR = 0.8, 0.4  # the informed teacher of `drivers`


def drivers(bias, seeds, steps=5000, pool=100_000):
    """The 2 x 2 of labeled rows (fixed / fresh) x teacher (oracle / informed)."""
    cells = {}
    for teacher in ("oracle", "informed"):
        fresh = [_pool_problem(bias, s, teacher, pool) for s in seeds]
        fixed = [_first_rows(p, 20) for p in fresh]
        star = np.mean([_step_optimal_lambda(p) for p in fresh])
        for rows, problems in (("fixed", fixed), ("fresh", fresh)):
            batch = None if rows == "fixed" else 20
            proto = pe.Protocol("adam", 1e-3, 1, batch, 256, patience=None)
            per_epoch = proto.steps_per_epoch(len(problems[0].a_l), 990)
            proto = dataclasses.replace(proto, epochs=math.ceil(steps / per_epoch))
            runs = pe.train_linear_runs(
                problems, pe.method_specs(("ppssl",), proto), proto
            )
            cells[rows, teacher] = (runs.lambdas[:, 0, :steps], star)
    marks = [m for m in (1, 10, 100, 1000, 5000, 12000) if m <= steps]
    for (rows, teacher), (lam, star) in cells.items():
        print(
            f"labeled {rows:5s}, {teacher:8s} teacher: lambda at steps "
            + " ".join(f"{m}:{lam[:, m - 1].mean():.2f}" for m in marks)
            + f" | mean over steps {lam.mean():.2f} | step-optimal lambda at "
            f"theta* {star:.2f}",
            flush=True,
        )


def _pool_problem(bias, seed, teacher, pool):
    """`pool` labeled rows, the protocol's 990 unlabeled rows, a teacher."""
    data, w, b = synthetic_two_group.generate(
        bias=bias, include_indicator=True, seed=seed, num_samples=pool + 1000
    )
    idx = np.arange(data.num_rows)
    problem = pe.make_problem(
        data,
        idx[:pool],
        idx[pool : pool + 990],
        None,
        idx[pool + 990 :],
        Teacher.from_linear(w, b),
    )
    if teacher == "informed":  # the oracle plus part of each row's label noise
        rng = np.random.default_rng(seed + 30_000)
        for rows, name in ((idx[:pool], "t_l"), (idx[pool : pool + 990], "t_u")):
            oracle = getattr(problem, name)
            labels = np.asarray(problem.scaler.transform(data.y[rows]), "float64")
            noise = labels - oracle
            error = INFORMED_ERROR * rng.normal(size=len(rows)) / problem.scaler.std
            setattr(problem, name, oracle + INFORMED_SHARE * noise + error)
    return problem


def _first_rows(problem, n):
    return dataclasses.replace(
        problem, a_l=problem.a_l[:n], y_l=problem.y_l[:n], t_l=problem.t_l[:n]
    )


def _step_optimal_lambda(p, n=20, m=256):
    """argmin over lambda of E ||g(lambda)||^2 at theta* (labeled least squares
    on the pool) for fresh batches of n labeled and m unlabeled rows: the
    lambda the online update estimates there,
    tr Cov(g_i, ghat_i) / ((1 + n/m) tr Var(ghat_j)), clipped to [0, 1]."""
    star = np.linalg.lstsq(p.a_l, p.y_l, rcond=None)[0]
    g = p.a_l * (p.a_l @ star - p.y_l)[:, None]
    g_hat = p.a_l * (p.a_l @ star - p.t_l)[:, None]
    g_hat_u = p.a_u * (p.a_u @ star - p.t_u)[:, None]
    cov = np.sum((g - g.mean(0)) * (g_hat - g_hat.mean(0))) / len(g)
    var = np.trace(np.cov(np.concatenate([g_hat, g_hat_u]).T))
    return float(np.clip(cov / ((1 + n / m) * var), 0.0, 1.0))


def closed_form(bias, seeds):
    """The closed-form lambda of the protocol's rows at every point."""
    for indicator in (True, False):
        problems = [pe.synthetic_problem(bias, s, indicator) for s in seeds]
        values = closed_form_lambdas(problems)
        gap = max(
            np.abs(
                linear_solution(p.a_l, p.y_l, p.t_l, p.a_u, p.t_u, "ppi_py")
                - linear_solution(p.a_l, p.y_l, p.t_l, p.a_u, p.t_u, "supervised")
            ).max()
            for p in problems
        )
        print(
            f"{'indicator' if indicator else 'no indicator':12s} closed-form lambda "
            + ", ".join(
                f"{at} {values[at].mean():.3f} (median {np.median(values[at]):.3f})"
                for at in CLOSED_FORM_POINTS
            )
            + f" | max |ppi_py point - labeled least squares| {gap:.1e}"
        )


def drift(bias, seeds, batches=2000, batch_size=256):
    """Rows `(point, mean part, variance part, Monte Carlo E[d], P(E[d] > 0))`."""
    out = {}
    for seed in seeds:
        p = pe.synthetic_problem(bias, seed, include_indicator=True)
        rng = np.random.default_rng(seed)
        points = {
            "theta = 0, lambda = 1": (1.0, np.zeros(p.a_l.shape[1])),
            "PPI solution, lambda = 1": (
                1.0,
                linear_solution(p.a_l, p.y_l, p.t_l, p.a_u, p.t_u, "ppi_minimizer"),
            ),
            "labeled least squares, lambda = 0.5": (
                0.5,
                np.linalg.lstsq(p.a_l, p.y_l, rcond=None)[0],
            ),
        }
        for name, (lam, theta) in points.items():
            g_l = _grad(p.a_l, p.y_l, theta)
            gh_l = _grad(p.a_l, p.t_l, theta)
            gh_u = np.array(
                [
                    _grad(p.a_u[rows], p.t_u[rows], theta)
                    for rows in (
                        rng.choice(len(p.a_u), batch_size, replace=False)
                        for _ in range(batches)
                    )
                ]
            )
            dbar = gh_u.mean(0) - gh_l
            delta = gh_u - gh_l
            d = 2 * np.einsum("bp,bp->b", g_l + lam * delta, delta)  # eq. 12
            mean_part = 2 * (g_l + lam * dbar) @ dbar
            var_part = 2 * lam * np.trace(np.cov(gh_u.T))
            out.setdefault(name, []).append((mean_part, var_part, d.mean()))
    for name, rows in out.items():
        r = np.array(rows)
        print(
            f"{name:36s} mean part {r[:, 0].mean():7.3f}  variance part "
            f"{r[:, 1].mean():6.3f}  E[d] {r[:, 2].mean():7.3f}  "
            f"seeds with E[d] > 0: {(r[:, 2] > 0).mean():.0%}"
        )


def population(bias, seeds):
    """Closed-form lambda on big samples at c * theta*."""
    scales = (0.0, 0.5, 0.9, 1.0)
    values = []
    for seed in seeds:
        data, w, b = synthetic_two_group.generate(
            bias=bias, include_indicator=True, seed=seed, num_samples=60_000
        )
        idx = np.arange(data.num_rows)
        p = pe.make_problem(
            data,
            idx[:20_000],
            idx[20_000:59_000],
            None,
            idx[59_000:],
            Teacher.from_linear(w, b),
        )
        star = np.linalg.lstsq(p.a_l, p.y_l, rcond=None)[0]
        values.append(
            [
                linear_closed_form_lambda(
                    p.a_l[:, :-1], p.y_l, p.t_l, p.a_u[:, :-1], p.t_u, at=c * star
                )
                for c in scales
            ]
        )
    mean = np.mean(values, axis=0)
    print(
        f"bias {bias}: closed-form lambda at c * theta*: "
        + ", ".join(f"c={c:g}: {v:.2f}" for c, v in zip(scales, mean, strict=True))
    )


def protocol(bias, seeds):
    """Trajectories and test MSE for protocol variants."""
    problems = [pe.synthetic_problem(bias, s, True) for s in seeds]
    fixed = (0.0, 0.3, 0.5, 0.7, 1.0)
    specs = pe.method_specs(("ppssl",), pe.SYNTHETIC_PROTOCOL, fixed)
    variants = {
        "paper (labeled full batch, D=1)": {},
        "D=0.1": {"lambda_diameter": 0.1},
        "labeled batch 10": {"labeled_batch_size": 10},
        "labeled batch 5": {"labeled_batch_size": 5},
    }
    for name, change in variants.items():
        proto = dataclasses.replace(pe.SYNTHETIC_PROTOCOL, **change)
        runs = pe.train_linear_runs(problems, specs, proto)
        lam = pe.forward_filled(runs.lambdas[:, 0])
        mse = np.array(
            [
                pe.group_mse(pe.predict(p, runs.theta[i]), p.y_test, p.groups_test)[
                    "total"
                ]
                for i, p in enumerate(problems)
            ]
        ).mean(0)
        print(
            f"{name:32s} lambda at steps "
            + " ".join(
                f"{s}:{lam[:, s - 1].mean():.2f}" for s in (1, 10, 100, 400, 1000)
            )
            + f" | at best epoch {runs.final_lambda[:, 0].mean():.2f} (epoch "
            f"{runs.best_epoch[:, 0].mean():.0f}), mean over steps "
            f"{runs.mean_lambda[:, 0].mean():.2f} over "
            f"{np.isfinite(runs.lambdas[:, 0]).sum(1).mean():.0f} steps | closed "
            f"form ppi_py {runs.closed_form['ppi_py'].mean():.2f}, ppi_minimizer "
            f"{runs.closed_form['ppi_minimizer'].mean():.2f} | test MSE PP-SSL "
            f"{mse[0]:.2f}, fixed "
            + ", ".join(f"{v:g}: {m:.2f}" for v, m in zip(fixed, mse[1:], strict=True))
        )


def _grad(a, y, theta):
    return 2 * a.T @ (a @ theta - y) / len(a)


PARTS = {
    "drivers": drivers,
    "closed_form": closed_form,
    "population": population,
    "drift": drift,
    "protocol": protocol,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--bias", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--steps", type=int, default=5000, help="training steps of --part drivers"
    )
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    parts = tuple(PARTS) if args.part == "all" else (args.part,)
    for part in parts:
        print(f"\n== {part}, bias {args.bias}, {len(seeds)} seeds ==", flush=True)
        if part == "drivers":
            drivers(args.bias, seeds, steps=args.steps)
        else:
            PARTS[part](args.bias, seeds)


if __name__ == "__main__":
    main()
