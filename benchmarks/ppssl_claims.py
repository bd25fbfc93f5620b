"""`python -m benchmarks.ppssl_claims RUN_DIR`: the PP-SSL paper's claims, checked.

Reads `results.json` of a `python -m experiments.ppssl ... --best-fixed-lambda`
run and prints, per setting (bias or n_B, variant):

- PP-SSL's total test MSE over the best fixed lambda's (the oracle chosen on
  test; the paper: "within a few percent", Table S9), as a ratio of the means;
- group-B test MSE of PP-SSL minus SSL, paired over seeds (same data, split
  and batches), mean +- standard error (the paper: PP-SSL better on group B at
  large bias);
- PP-SSL's lambda at the tested epoch and its mean over all training steps,
  each a mean over seeds, and the best fixed lambda (the paper: lower lambda
  for worse teachers);
- total test MSE of PP-SSL minus each `ppi_closed_form*` row (PPI++ with the
  closed-form lambda), paired over seeds (the paper: PP-SSL better than PPI++
  on the synthetic data, comparable on California).

Example:

    python -m benchmarks.ppssl_claims runs/ppssl_synthetic_20260101-000000
"""

import argparse
import json
import math
import os

import numpy as np


def claims(records, aggregates):
    """One row per setting: the claims' numbers (dicts)."""
    rows = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        aggs = {a["method"]: a for a in aggregates if a["setting"] == setting}
        mine = [r for r in records if r["setting"] == setting]
        best = aggs["best_fixed_lambda"]
        b_diff = paired_difference(mine, "ppssl", "ssl", "mse_B")
        row = {
            "setting": setting,
            "ratio_to_best_fixed": aggs["ppssl"]["mse_total_mean"]
            / best["mse_total_mean"],
            "ppssl_total": aggs["ppssl"]["mse_total_mean"],
            "best_fixed_total": best["mse_total_mean"],
            "best_fixed_lambda": best["lambda_value"],
            "b_diff_mean": b_diff[0],
            "b_diff_sem": b_diff[1],
            "ppssl_lambda": aggs["ppssl"]["final_lambda_mean"],
            "ppssl_mean_lambda": aggs["ppssl"]["mean_lambda_mean"],
            "seeds": aggs["ppssl"]["num_seeds"],
        }
        for method in aggs:
            if method.startswith("ppi_closed_form"):
                row[f"vs_{method}"] = paired_difference(
                    mine, "ppssl", method, "mse_total"
                )
        rows.append(row)
    return rows


def paired_difference(records, method, other, field):
    """`(mean, standard error)` over seeds of `method`'s `field` minus `other`'s."""
    values = {}
    for r in records:
        if r["method"] in (method, other):
            values.setdefault(r["seed"], {})[r["method"]] = r[field]
    diff = np.array([v[method] - v[other] for v in values.values()])
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


def format_claims(rows):
    closed = [k for k in rows[0] if k.startswith("vs_")]
    header = ["setting", "PP-SSL / best fixed (total MSE)", "best lambda"]
    header += ["B: PP-SSL - SSL", "PP-SSL lambda (tested / mean over steps)"]
    header += [f"total: PP-SSL - {k[3:]}" for k in closed]
    body = [
        [
            r["setting"],
            f"{r['ratio_to_best_fixed']:.3f} ({r['ppssl_total']:.3f} / "
            f"{r['best_fixed_total']:.3f})",
            f"{r['best_fixed_lambda']:.1f}",
            f"{r['b_diff_mean']:+.3f} +- {r['b_diff_sem']:.3f}",
            f"{r['ppssl_lambda']:.3f} / {r['ppssl_mean_lambda']:.3f}",
        ]
        + [f"{r[k][0]:+.3f} +- {r[k][1]:.3f}" for k in closed]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
             for line in [header] + body]  # fmt: skip
    return "\n".join([lines[0], "-+-".join("-" * w for w in widths), *lines[1:]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    with open(os.path.join(args.run_dir, "results.json")) as f:
        saved = json.load(f)
    print(format_claims(claims(saved["records"], saved["aggregates"])))


if __name__ == "__main__":
    main()
