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
  for worse teachers).

Example:

    python -m benchmarks.ppssl_claims runs/ppssl_synthetic_20260101-000000
"""

import argparse
import json
import math
import os

import numpy as np


def claims(records, aggregates):
    """One row per setting: the three claims' numbers (dicts)."""
    rows = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        aggs = {a["method"]: a for a in aggregates if a["setting"] == setting}

        def per_seed(method, field, setting=setting):
            return {
                r["seed"]: r[field]
                for r in records
                if r["setting"] == setting and r["method"] == method
            }

        ppssl_b, ssl_b = per_seed("ppssl", "mse_B"), per_seed("ssl", "mse_B")
        diff = np.array([ppssl_b[s] - ssl_b[s] for s in ppssl_b])
        best = aggs["best_fixed_lambda"]
        rows.append(
            {
                "setting": setting,
                "ratio_to_best_fixed": aggs["ppssl"]["mse_total_mean"]
                / best["mse_total_mean"],
                "ppssl_total": aggs["ppssl"]["mse_total_mean"],
                "best_fixed_total": best["mse_total_mean"],
                "best_fixed_lambda": best["lambda_value"],
                "b_diff_mean": float(diff.mean()),
                "b_diff_sem": float(diff.std(ddof=1) / math.sqrt(len(diff))),
                "ppssl_lambda": aggs["ppssl"]["final_lambda_mean"],
                "ppssl_mean_lambda": aggs["ppssl"]["mean_lambda_mean"],
                "seeds": len(diff),
            }
        )
    return rows


def format_claims(rows):
    header = (
        "setting                | PP-SSL / best fixed (total MSE) | best lambda | "
        "B: PP-SSL - SSL      | PP-SSL lambda (tested / mean over steps)"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['setting']:22s} | {r['ratio_to_best_fixed']:.3f} "
            f"({r['ppssl_total']:.3f} / {r['best_fixed_total']:.3f})"
            f"{'':7s}| {r['best_fixed_lambda']:.1f}         | "
            f"{r['b_diff_mean']:+7.3f} +- {r['b_diff_sem']:.3f} | "
            f"{r['ppssl_lambda']:.3f} / {r['ppssl_mean_lambda']:.3f}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    with open(os.path.join(args.run_dir, "results.json")) as f:
        saved = json.load(f)
    print(format_claims(claims(saved["records"], saved["aggregates"])))


if __name__ == "__main__":
    main()
