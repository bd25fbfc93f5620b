"""Results of a run: per-seed records, mean +- std aggregates, table and files."""

import csv
import json
import os

import numpy as np

TABLE_METRICS = ("mae", "rmse", "r2")


def record(result, export_path=None):
    """A flat, JSON-ready record of one `TrainResult`."""
    row = {
        "method": result.method,
        "seed": result.seed,
        "best_epoch": result.best_epoch,
    }
    row.update({f"val_{k}": v for k, v in result.validation.items()})
    row.update({f"test_{k}": v for k, v in result.test.items()})
    for group, metrics in result.test_groups.items():
        row.update({f"test_{group}_{k}": v for k, v in metrics.items()})
    row["tensorboard_dir"] = result.tensorboard_dir
    return row


def aggregate(records):
    """Mean and std over seeds of every numeric test/val metric, per method."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    out = []
    for method in methods:
        rows = [r for r in records if r["method"] == method]
        agg = {"method": method, "num_seeds": len(rows)}
        for key in rows[0]:
            if key.startswith(("test_", "val_")):
                values = np.array([r[key] for r in rows], dtype="float64")
                agg[f"{key}_mean"] = float(values.mean())
                agg[f"{key}_std"] = float(values.std(ddof=1)) if len(rows) > 1 else 0.0
        out.append(agg)
    return out


def format_table(aggregates, metrics=TABLE_METRICS, title=None):
    """A paper-style text table: method x test metrics, mean +- std over seeds."""
    header = ["method", "seeds"] + [f"test {m.upper()}" for m in metrics]
    rows = [
        [a["method"], str(a["num_seeds"])]
        + [_mean_std(a, f"test_{m}") for m in metrics]
        for a in aggregates
    ]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [
        " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    ]
    return "\n".join(([title] if title else []) + lines)


def write_results(run_dir, config, records, aggregates, exports):
    """Writes `results.json` (everything) and `results.csv` (one row per record
    plus one per aggregate) into `run_dir`; returns their paths."""
    json_path = os.path.join(run_dir, "results.json")
    with open(json_path, "w") as f:
        json.dump(
            {
                "config": config,
                "records": records,
                "aggregates": aggregates,
                "exports": exports,
            },
            f,
            indent=2,
        )
    csv_path = os.path.join(run_dir, "results.csv")
    rows = [dict(r, kind="seed") for r in records] + [
        dict(a, kind="mean_std", seed="") for a in aggregates
    ]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def _mean_std(agg, key):
    mean, std = agg[f"{key}_mean"], agg[f"{key}_std"]
    return f"{mean:.4f} +- {std:.4f}" if agg["num_seeds"] > 1 else f"{mean:.4f}"
