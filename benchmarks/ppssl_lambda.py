"""`python -m benchmarks.ppssl_lambda`: why PP-SSL's online lambda falls to ~0.

Diagnostics of the online lambda (eq. 11-12) on the synthetic two-group
protocol (Appendix D.1, with the group indicator), three parts:

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
its lambda at the best-validation epoch and the test MSE of PP-SSL and of
fixed lambdas, for the paper's protocol (labeled batch 256 = full batch, D = 1)
and variants: D = 0.1, labeled mini-batches of 10 or 5 rows, and fresh labeled
rows every step (a 100,000-row labeled pool, batch 20; lambda only).

Example:

    python -m benchmarks.ppssl_lambda --part drift --bias 3
"""

import argparse
import dataclasses

import numpy as np

from datasets import synthetic_two_group
from keras_ssr.methods.ppssl import linear_closed_form_lambda, linear_solution
from keras_ssr.models.teacher import Teacher
from trainers import ppssl_experiments as pe


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
                linear_solution(p.a_l, p.y_l, p.t_l, p.a_u, p.t_u, "ppi"),
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
            + " ".join(f"{s}:{lam[:, s].mean():.2f}" for s in (1, 10, 100, 400, 1000))
            + f" | at best epoch {runs.final_lambda[:, 0].mean():.2f} (epoch "
            f"{runs.best_epoch[:, 0].mean():.0f}) | closed form "
            f"{runs.closed_form.mean():.2f} | test MSE PP-SSL {mse[0]:.2f}, fixed "
            + ", ".join(f"{v:g}: {m:.2f}" for v, m in zip(fixed, mse[1:], strict=True))
        )
    fresh = []
    for seed in seeds[:5]:
        data, w, b = synthetic_two_group.generate(
            bias=bias, include_indicator=True, seed=seed, num_samples=120_000
        )
        idx = np.arange(data.num_rows)
        fresh.append(
            pe.make_problem(
                data,
                idx[:100_000],
                idx[100_000:119_000],
                None,
                idx[119_000:],
                Teacher.from_linear(w, b),
            )
        )
    proto = pe.Protocol("adam", 1e-3, 1, 20, 256, patience=None)
    runs = pe.train_linear_runs(fresh, pe.method_specs(("ppssl",), proto), proto)
    lam = runs.lambdas[:, 0]
    print(
        "fresh labeled rows (batch 20 of 100,000)  lambda at steps "
        + " ".join(f"{s}:{lam[:, s].mean():.2f}" for s in (1, 10, 100, 1000, 4999))
    )


def _grad(a, y, theta):
    return 2 * a.T @ (a @ theta - y) / len(a)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("drift", "population", "protocol", "all"))
    parser.add_argument("--bias", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    parts = ("drift", "population", "protocol") if args.part == "all" else (args.part,)
    for part in parts:
        print(f"\n== {part}, bias {args.bias}, {len(seeds)} seeds ==", flush=True)
        {"drift": drift, "population": population, "protocol": protocol}[part](
            args.bias, seeds
        )


if __name__ == "__main__":
    main()
