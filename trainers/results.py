"""Results of a run: per-seed records, mean +- std aggregates, table and files."""

import csv
import json
import os
import re

import numpy as np

TABLE_METRICS = ("mae", "rmse", "r2")
_GROUP_KEY = re.compile(r"^test_(.+)_mse(?:_mean)?$")
GROUP_METRICS = ("mse",)  # per-group columns of the table (PP-SSL's Table S9)


def run_hparams(config, method, seed):
    """The settings of one (method, seed) for TensorBoard's HParams: data set,
    method, label budget, seed, budget and optimizer, preset, and every field
    of the method's config sections (`section.field`)."""
    import dataclasses

    from keras_ssr.methods.registry import get_method

    training = config.training
    hparams = {
        "dataset": config.data.dataset,
        "method": method,
        "label_ratio": config.data.label_ratio,
        "num_labels": config.data.num_labels,
        "seed": seed,
        "backbone": config.model.backbone,
        "epochs": training.epochs,
        "learning_rate": training.learning_rate,
        "batch_size": training.batch_size,
        "unlabeled_batch_size": training.unlabeled_batch_size,
        "preset": (config.preset or {}).get("name"),
    }
    sections = config.method_sections(method)
    for section in get_method(method).cls.config_sections:
        values = dataclasses.asdict(sections[section.name])
        hparams.update({f"{section.name}.{k}": v for k, v in values.items()})
    return hparams


def write_run_hparams(result, config):
    """Writes a finished (method, seed)'s HParams and final metrics to
    `<tensorboard_dir>/hparams` (see `keras_ssr.hparams.write_hparams`)."""
    from keras_ssr.hparams import write_hparams

    write_hparams(
        os.path.join(result.tensorboard_dir, "hparams"),
        run_hparams(config, result.method, result.seed),
        {"validation": result.validation, "test": result.test},
        config=config.to_dict(),
    )


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


# More groups than this do not get table columns (the table would not fit).
MAX_GROUP_COLUMNS = 5


def format_table(aggregates, metrics=TABLE_METRICS, title=None):
    """A paper-style text table: method x test metrics, mean +- std over seeds.

    On data sets with groups (records with `test_<group>_<metric>` keys, e.g.
    `synthetic_two_group` or California Housing's two groups) it adds one
    column per group for each of `GROUP_METRICS` after the overall metrics,
    for up to `MAX_GROUP_COLUMNS` groups (more, e.g. rotated_mnist's ten digit
    classes, stay in results.json/csv and TensorBoard only).
    """
    columns = [(f"test {m.upper()}", f"test_{m}") for m in metrics]
    groups = group_names(aggregates)
    if len(groups) > MAX_GROUP_COLUMNS:
        groups = []
    if groups and "mse" not in metrics:
        columns.append(("test MSE", "test_mse"))
    columns += [
        (f"{group} {m.upper()}", f"test_{group}_{m}")
        for group in groups
        for m in GROUP_METRICS
    ]
    header = ["method", "seeds"] + [label for label, _ in columns]
    rows = [
        [a["method"], str(a["num_seeds"])] + [_mean_std(a, key) for _, key in columns]
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


def group_names(rows):
    """Group names present in records or aggregates (`test_<group>_mse...`)."""
    names = []
    for row in rows:
        for key in row:
            match = _GROUP_KEY.match(key)
            if match and match.group(1) not in names:
                names.append(match.group(1))
    return names


def write_group_summaries(result):
    """Writes a run's per-group test metrics to its TensorBoard directory.

    Scalars `test/<group>/<metric>` (and `test/total/<metric>`) at step
    `best_epoch`, with their own writer in `<tensorboard_dir>/groups`; nothing
    when the data set has no groups.

    Args:
        result: a `TrainResult` (`test`, `test_groups`, `best_epoch`,
            `tensorboard_dir`).

    Returns:
        The directory written, or `None`.
    """
    if not result.test_groups:
        return None
    import tensorflow as tf

    log_dir = os.path.join(result.tensorboard_dir, "groups")
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for group, metrics in {"total": result.test, **result.test_groups}.items():
            for name, value in metrics.items():
                tf.summary.scalar(f"test/{group}/{name}", value, step=result.best_epoch)
    writer.flush()
    return log_dir
