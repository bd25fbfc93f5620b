"""`python -m benchmarks.gain_sweep`: runs of the trainer with knobs it has no flag for.

Validation-driven search for settings where unlabeled data helps (issue
"Evidence that unlabeled data helps"). Every flag of `python -m trainers.run`
is accepted and builds the same `RunConfig`; this script adds:

- `--filters 16,32,64`: the widths of `SmallCNNBackbone` (the trainer builds
  the default `(32, 64, 128)`), and `--lstm-units N`: the units of
  `BiLSTMBackbone` (default 128); this script swaps the backbone factory of
  `trainers.modality` for the run, nothing else changes;
- `--group-diagnostics`: HPL's diagnostics callback also gets the data's
  groups (per-class mean sigma^2 per epoch, see `HPLDiagnostics`); with
  `--benchmark-mode` also the per-class pseudo-label errors and Spearman.
  The per-epoch values land in the log line (`diagnostics`);
- `--cosine`: the learning rate follows a cosine decay from
  `--learning-rate` to 0 over the run (`epochs x steps-per-epoch` steps;
  needs `--steps-per-epoch`); the trainer has a constant rate;
- `--tag NAME`: a label of the configuration in the log;
- `--log PATH`: a JSON-lines file; one line per (method, seed) with the
  configuration, the **validation** metrics of the restored best epoch, the
  per-epoch validation MSE curve (from the TensorBoard events), the best
  epoch and the wall/CPU seconds of the run. The test metrics of the same run
  go to a separate file (`PATH` with `.test.jsonl`), which the search never
  reads: hyperparameters are chosen on validation data only.

It calls `trainers.experiment.train_and_evaluate` for each method and seed,
as `trainers.run.run` does, without exporting SavedModels.

Example:

    python -m benchmarks.gain_sweep --dataset rotated_fashion_mnist \\
        --methods supervised,pseudo_label --seeds 0,1 --label-ratio 0.05 \\
        --filters 16,32,64 --epochs 30 --steps-per-epoch 50 \\
        --unlabeled-batch-size 128 --tag small_cnn --log runs/gain/log.jsonl
"""

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_ssr.callbacks.hpl_diagnostics import HPLDiagnostics  # noqa: E402
from keras_ssr.models.small_cnn_backbone import SmallCNNBackbone  # noqa: E402
from trainers import experiment, modality  # noqa: E402
from trainers.distribution import make_strategy  # noqa: E402
from trainers.experiment import train_and_evaluate  # noqa: E402
from trainers.run import parse_args as parse_run_args  # noqa: E402


def parse_args(argv=None):
    """`(extra, config)`: this script's options and the trainer's `RunConfig`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--filters", default=None, help="SmallCNNBackbone widths")
    parser.add_argument("--lstm-units", type=int, default=None)
    parser.add_argument("--tag", default="", help="label of the configuration")
    parser.add_argument("--group-diagnostics", action="store_true")
    parser.add_argument("--cosine", action="store_true")
    parser.add_argument("--log", default="runs/gain/log.jsonl", help="JSON lines")
    extra, rest = parser.parse_known_args(argv)
    if extra.filters is not None:
        extra.filters = tuple(int(f) for f in extra.filters.split(","))
    config = parse_run_args(rest)
    if extra.cosine:
        if not config.steps_per_epoch:
            parser.error("--cosine needs --steps-per-epoch")
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, config.epochs * config.steps_per_epoch
        )
        config = dataclasses.replace(config, learning_rate=schedule)
    return extra, config


@contextlib.contextmanager
def cnn_filters(filters, lstm_units=None):
    """Within the block the trainer's `small_cnn` backbone has `filters` and
    its `bilstm` backbone `lstm_units` (`None`: the trainer's default)."""
    if filters is None and lstm_units is None:
        yield
        return
    original = modality._backbone

    def backbone(name, data, split, config):
        if name == "small_cnn" and filters is not None:
            return SmallCNNBackbone(filters, dropout=config.dropout, name="backbone")
        if name == "bilstm" and lstm_units is not None:
            from keras_ssr.models.bilstm_backbone import BiLSTMBackbone

            return BiLSTMBackbone.from_texts(
                modality._texts(data.x[split.train]),
                glove=config.glove,
                dropout=config.dropout,
                lstm_units=lstm_units,
                name="backbone",
            )
        return original(name, data, split, config)

    modality._backbone = backbone
    try:
        yield
    finally:
        modality._backbone = original


@contextlib.contextmanager
def grouped_diagnostics(enabled):
    """Within the block HPL's diagnostics get the unlabeled rows' groups."""
    if not enabled:
        yield
        return
    original = experiment._method_callbacks

    def callbacks(model, data, split, views, config, tensorboard_dir):
        found = original(model, data, split, views, config, tensorboard_dir)
        if data.groups is None:
            return found
        return [
            _with_groups(c, data, split, views, config)
            if isinstance(c, HPLDiagnostics)
            else c
            for c in found
        ]

    experiment._method_callbacks = callbacks
    try:
        yield
    finally:
        experiment._method_callbacks = original


def _with_groups(callback, data, split, views, config):
    rows = split.unlabeled
    return HPLDiagnostics(
        callback.log_dir,
        data.x[rows],
        views,
        data.y[rows] if config.benchmark_mode else None,
        unlabeled_groups=data.groups[rows],
        group_names=data.group_names,
    )


def diagnostics_history(tensorboard_dir):
    """HPLDiagnostics' per-epoch values (`history.json`), or None."""
    path = os.path.join(tensorboard_dir, "diagnostics", "history.json")
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def validation_curve(tensorboard_dir):
    """Per-epoch validation MSE written by Keras' TensorBoard callback."""
    values = {}
    for path in glob.glob(os.path.join(tensorboard_dir, "validation", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "epoch_mse":
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[k] for k in sorted(values)]


def run_one(method, data, config, seed, run_dir, strategy, extra):
    """Trains one (method, seed); returns `(record, test_record)`."""
    wall, cpu = time.time(), time.process_time()
    with (
        cnn_filters(extra.filters, extra.lstm_units),
        grouped_diagnostics(extra.group_diagnostics),
    ):
        result = train_and_evaluate(method, data, config, seed, run_dir, strategy)
    common = {
        "tag": extra.tag,
        "dataset": config.dataset,
        "method": method,
        "seed": seed,
        "filters": extra.filters,
        "lstm_units": extra.lstm_units,
        "cosine": extra.cosine,
    }
    record = dict(
        common,
        best_epoch=result.best_epoch,
        val=result.validation,
        val_mse_curve=validation_curve(result.tensorboard_dir),
        diagnostics=diagnostics_history(result.tensorboard_dir),
        wall_seconds=time.time() - wall,
        cpu_seconds=time.process_time() - cpu,
        config=config.to_dict(),
    )
    test = dict(common, test=result.test, test_groups=result.test_groups)
    return record, test


def main(argv=None):
    extra, config = parse_args(argv)
    if config.verbose == 0:
        keras.config.disable_interactive_logging()
    from trainers.modality import load_data

    data = load_data(config)
    strategy = make_strategy(config.strategy)
    run_name = config.run_name or f"{config.dataset}_{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = os.path.join(config.output_dir, run_name)
    os.makedirs(os.path.dirname(os.path.abspath(extra.log)), exist_ok=True)
    test_log = extra.log.removesuffix(".jsonl") + ".test.jsonl"
    for method in config.methods:
        for seed in config.seeds:
            record, test = run_one(method, data, config, seed, run_dir, strategy, extra)
            with open(extra.log, "a") as file:
                file.write(json.dumps(record, default=_jsonable) + "\n")
            with open(test_log, "a") as file:
                file.write(json.dumps(test, default=_jsonable) + "\n")
            curve = " ".join(f"{v:.1f}" for v in record["val_mse_curve"])
            print(
                f"[{extra.tag}] {method} seed {seed}: val MSE "
                f"{record['val']['mse']:.3f} MAE {record['val']['mae']:.3f} "
                f"(best epoch {record['best_epoch']}, "
                f"{record['wall_seconds']:.0f} s)\n  curve: {curve}",
                flush=True,
            )
    return 0


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
