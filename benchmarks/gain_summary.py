"""`python -m benchmarks.gain_summary LOG`: validation table of a `gain_sweep` log.

Reads the JSON lines written by `benchmarks.gain_sweep` (never its
`.test.jsonl` companion) and prints one markdown row per (tag, method):
seeds, validation MSE and MAE (mean +- std over seeds, ddof 1), the
per-seed validation MSE, the mean validation MSE of the last 5 epochs (less
optimistic than the best epoch of a noisy curve), best epochs and the mean
wall seconds of a run;
with `--paired BASELINE_TAG:METHOD` also the mean per-seed difference of
validation MSE to that baseline (seeds that both have). With `--mechanism`
it prints instead, for every HPL run logged with `--group-diagnostics`, the
per-group mean sigma^2 and mean |pseudo-label error| (benchmark mode) at the
best epoch and at the last epoch, the rank of each group, and Spearman's
correlation of sigma^2 with |error| every few epochs (HPL paper, Fig. 4).
With `--final` (for the final protocol's log only, once the protocol is
fixed) it reads the `.test.jsonl` companion and prints the test table: test
MAE and MSE (mean +- std over seeds), the paired difference to Supervised
(mean +- std over seeds) and the fraction of the Supervised -> Fully-supervised
gap each method closes, `(sup - method) / (sup - fully_supervised)` on the
seed means.

Example:

    python -m benchmarks.gain_summary runs/gain/log.jsonl --dataset rotated_mnist
"""

import argparse
import json
import sys

import numpy as np


def read_log(path, dataset=None):
    with open(path) as file:
        records = [json.loads(line) for line in file if line.strip()]
    return [r for r in records if dataset is None or r["dataset"] == dataset]


def _mean_std(values):
    values = np.asarray(values, "float64")
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.3f} ± {std:.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def summary_rows(records, paired=None):
    groups = {}
    for r in records:
        groups.setdefault((r["tag"], r["method"]), {})[r["seed"]] = r
    base = groups.get(tuple(paired.split(":"))) if paired else None
    lines = [
        "| dataset | tag | method | seeds | val MSE | val MAE | per seed "
        "| last-5 val MSE | best epochs | s/run |" + (" Δ vs base |" if base else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if base else ""),
    ]
    for (tag, method), by_seed in groups.items():
        seeds = sorted(by_seed)
        runs = [by_seed[s] for s in seeds]
        mse = [r["val"]["mse"] for r in runs]
        line = (
            f"| {runs[0]['dataset']} | {tag} | {method} | {','.join(map(str, seeds))} "
            f"| {_mean_std(mse)} | {_mean_std([r['val']['mae'] for r in runs])} "
            f"| {' / '.join(f'{v:.2f}' for v in mse)} "
            f"| {_mean_std([np.mean(r['val_mse_curve'][-5:]) for r in runs])} "
            f"| {','.join(str(r['best_epoch']) for r in runs)} "
            f"| {np.mean([r['wall_seconds'] for r in runs]):.0f} |"
        )
        if base:
            common = [s for s in seeds if s in base]
            diff = [by_seed[s]["val"]["mse"] - base[s]["val"]["mse"] for s in common]
            line += f" {np.mean(diff):+.3f} ({len(common)}) |" if common else " |"
        lines.append(line)
    return lines


def mechanism_rows(records, every=5):
    lines = []
    for r in records:
        history = r.get("diagnostics")
        if not history or "group_mean_sigma2" not in history:
            continue
        best, last = r["best_epoch"] - 1, len(history["epoch"]) - 1
        sigma2 = history["group_mean_sigma2"]
        error = history.get("group_mean_error", {})
        order = sorted(sigma2, key=lambda g: -sigma2[g][best])
        lines += [
            f"\n{r['dataset']} [{r['tag']}] {r['method']} seed {r['seed']}: "
            f"best epoch {best + 1}, last {last + 1}",
            "| group | mean sigma^2 (best) | mean abs error (best) "
            "| mean sigma^2 (last) | mean abs error (last) | sigma^2 rank |",
            "|---|---|---|---|---|---|",
        ]
        for rank, group in enumerate(order, 1):
            err = error.get(group)
            lines.append(
                f"| {group} | {sigma2[group][best]:.3f} | "
                f"{err[best] if err else float('nan'):.2f} | "
                f"{sigma2[group][last]:.3f} | "
                f"{err[last] if err else float('nan'):.2f} | {rank} |"
            )
        if error:
            groups = list(sigma2)
            lines.append(
                "Spearman across groups of (mean sigma^2, mean abs error): "
                f"best epoch {_group_spearman(sigma2, error, groups, best):.2f}, "
                f"last epoch {_group_spearman(sigma2, error, groups, last):.2f}"
            )
        if "spearman" in history:
            shown = range(0, last + 1, every)
            lines.append(
                "Spearman(sigma^2, |error|) by epoch: "
                + ", ".join(
                    f"{history['epoch'][i]}: {history['spearman'][i]:.2f}"
                    for i in shown
                )
            )
    return lines


def _group_spearman(sigma2, error, groups, epoch):
    from keras_ssr.callbacks.hpl_diagnostics import spearman

    return spearman(
        [sigma2[g][epoch] for g in groups], [error[g][epoch] for g in groups]
    )


def final_rows(log_path, dataset=None, metric="mae"):
    path = log_path.removesuffix(".jsonl") + ".test.jsonl"
    tests = read_log(path, dataset)
    by_method = {}
    for r in tests:
        by_method.setdefault(r["method"], {})[r["seed"]] = r["test"]
    sup, full = by_method.get("supervised"), by_method.get("fully_supervised")
    lines = [
        f"| method | seeds | test MAE | test MSE | {metric.upper()} - supervised "
        "(paired) | gap closed |",
        "|---|---|---|---|---|---|",
    ]
    for method, by_seed in by_method.items():
        seeds = sorted(by_seed)
        values = [by_seed[s][metric] for s in seeds]
        paired = gap = ""
        if sup and method != "supervised":
            common = [s for s in seeds if s in sup]
            diff = [by_seed[s][metric] - sup[s][metric] for s in common]
            paired = _mean_std(diff) if diff else ""
        if sup and full and method not in ("supervised", "fully_supervised"):
            base = np.mean([v[metric] for v in sup.values()])
            top = np.mean([v[metric] for v in full.values()])
            gap = f"{(base - np.mean(values)) / (base - top):.0%}"
        lines.append(
            f"| {method} | {','.join(map(str, seeds))} "
            f"| {_mean_std([by_seed[s]['mae'] for s in seeds])} "
            f"| {_mean_std([by_seed[s]['mse'] for s in seeds])} | {paired} | {gap} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gain_summary")
    parser.add_argument("log")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--paired", default=None, help="TAG:METHOD of the baseline")
    parser.add_argument("--mechanism", action="store_true")
    parser.add_argument(
        "--final", action="store_true", help="test table of the final protocol's log"
    )
    args = parser.parse_args(argv)
    if args.log.endswith(".test.jsonl"):
        parser.error("this table reads validation logs only, not .test.jsonl")
    if args.final:
        print("\n".join(final_rows(args.log, args.dataset)))
        return 0
    records = read_log(args.log, args.dataset)
    if args.mechanism:
        print("\n".join(mechanism_rows(records)))
    else:
        print("\n".join(summary_rows(records, args.paired)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
