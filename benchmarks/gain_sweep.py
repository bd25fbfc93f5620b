"""`python -m benchmarks.gain_sweep`: trainer runs logged for a validation-only search.

Validation-driven search for settings where unlabeled data helps (issue
"Evidence that unlabeled data helps"). Every flag of `python -m trainers.run`
is accepted and builds the same `RunConfig` (backbone widths are trainer flags:
`--cnn-filters`, `--lstm-units`, `--lr-schedule cosine`); this script adds:

- `--tag NAME`: a label of the configuration in the log;
- `--log PATH`: a JSON-lines file; one line per (method, seed) with the
  configuration, the **validation** metrics of the restored best epoch, the
  per-epoch validation MSE curve (from the TensorBoard events), HPL's
  per-epoch diagnostics (per-group mean sigma^2; with `--benchmark-mode` also
  per-group pseudo-label errors and Spearman), the best epoch and the wall/CPU
  seconds of the run. The test metrics of the same run go to a separate file
  (`PATH` with `.test.jsonl`), which the search never reads: hyperparameters
  are chosen on validation data only.

It calls `trainers.experiment.train_and_evaluate` for each method and seed,
as `trainers.run.run` does, without exporting SavedModels.

Example:

    python -m benchmarks.gain_sweep --dataset rotated_fashion_mnist \\
        --methods supervised,pseudo_label --seeds 0,1 --label-ratio 0.05 \\
        --cnn-filters 16,32,64 --epochs 30 --steps-per-epoch 50 \\
        --unlabeled-batch-size 128 --tag small_cnn --log runs/gain/log.jsonl
"""

import argparse
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_ssr.cpu_threads import set_cpu_threads  # noqa: E402
from trainers.cli import parse_args as parse_run_args  # noqa: E402
from trainers.distribution import make_strategy  # noqa: E402
from trainers.experiment import load_data, train_and_evaluate  # noqa: E402


def parse_args(argv=None):
    """`(extra, config)`: this script's options and the trainer's `RunConfig`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tag", default="", help="label of the configuration")
    parser.add_argument("--log", default="runs/gain/log.jsonl", help="JSON lines")
    extra, rest = parser.parse_known_args(argv)
    return extra, parse_run_args(rest)


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
    result = train_and_evaluate(method, data, config, seed, run_dir, strategy)
    common = {
        "tag": extra.tag,
        "dataset": config.data.dataset,
        "method": method,
        "seed": seed,
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
    threads = config.distribution
    set_cpu_threads(threads.intra_op_threads, threads.inter_op_threads)
    if config.output.verbose == 0:
        keras.config.disable_interactive_logging()
    strategy = make_strategy(threads.strategy)
    data = load_data(config)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = config.output.run_name or f"{config.data.dataset}_{stamp}"
    run_dir = os.path.join(config.output.output_dir, run_name)
    os.makedirs(os.path.dirname(os.path.abspath(extra.log)), exist_ok=True)
    test_log = extra.log.removesuffix(".jsonl") + ".test.jsonl"
    for method in config.training.methods:
        for seed in config.training.seeds:
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
