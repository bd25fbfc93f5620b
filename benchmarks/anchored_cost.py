"""`python -m benchmarks.anchored_cost`: train-step and validation cost of methods
that predict from labeled anchors (SSDKL, TNNR) against Supervised.

SSDKL's and TNNR's predictions condition on the labeled training rows: every
`evaluate` call recomputes the anchors' features (and SSDKL's Cholesky factor)
with the current weights. This measures what that costs next to what their
training step costs, on any data set and backbone of the trainer, in one
process: each method is set up exactly as `trainers.run` does (`prepare_run`:
split, modality backbone and views, compile, the method's `prepare`), its
train function and `evaluate` on the validation split are traced by warm-up
calls, then rounds visit the methods in a fresh random order, timing
`--steps` train steps (on `--cached-batches` batches of the real stream,
cycled) and one `evaluate` over the validation split. Reported: median ms per
train step and per validation pass, and the medians of the per-round ratios
to the first method.

Everything after `--` is a `trainers.run` command line (data set, backbone,
batch sizes, methods, `--jit-compile`...).

Example:

    python -m benchmarks.anchored_cost -- --methods supervised,ssdkl,tnnr
    python -m benchmarks.anchored_cost -- --dataset rotated_mnist \\
        --label-ratio 0.1 --methods supervised,ssdkl,tnnr
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_ssr.data.streams import make_eval_stream  # noqa: E402
from trainers.cli import parse_args as parse_trainer_args  # noqa: E402
from trainers.experiment import load_data, prepare_run  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.anchored_cost",
        description="Train-step and validation cost against the first method.",
    )
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds")
    parser.add_argument("--steps", type=int, default=10, help="train steps per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed train steps")
    parser.add_argument("--cached-batches", type=int, default=5)
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.trainer = parse_trainer_args(argv[split + 1 :])
    return args


def setup(method, data, args, log_dir):
    """The method's model (set up as the trainer does), warmed up."""
    config = args.trainer
    seed = config.training.seeds[0]
    keras.utils.set_random_seed(seed)
    run = prepare_run(method, data, config, seed, tf.distribute.get_strategy(), log_dir)
    batches = list(run.make_stream().take(args.cached_batches))
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    dataset = tf.data.Dataset.from_tensor_slices(stacked).cache().repeat()
    validation = make_eval_stream(
        data.x[run.split.validation], data.y[run.split.validation]
    ).cache()
    entry = {"model": run.model, "iterator": iter(dataset), "validation": validation}
    entry["model"].make_train_function()
    train(entry, args.warmup)
    entry["model"].evaluate(validation, verbose=0)
    entry.update(step_ms=[], eval_ms=[], anchors=len(run.split.labeled))
    return entry


def train(entry, steps):
    logs = None
    for _ in range(steps):
        logs = entry["model"].train_function(entry["iterator"])
    logs["loss"].numpy()


def time_rounds(entries, args):
    rng = np.random.default_rng(0)
    names = list(entries)
    for index in range(args.rounds):
        for i in rng.permutation(len(names)):
            entry = entries[names[i]]
            tic = time.perf_counter()
            train(entry, args.steps)
            entry["step_ms"].append((time.perf_counter() - tic) * 1e3 / args.steps)
            tic = time.perf_counter()
            entry["model"].evaluate(entry["validation"], verbose=0)
            entry["eval_ms"].append((time.perf_counter() - tic) * 1e3)
        print(f"round {index + 1}/{args.rounds}", flush=True)


def report(entries):
    base = next(iter(entries.values()))
    print(
        f"\n{'method':<12} {'ms/step':>8} {'vs base':>8} {'val ms':>8} "
        f"{'vs base':>8}  labeled rows"
    )
    for name, entry in entries.items():
        step = np.median(np.asarray(entry["step_ms"]) / base["step_ms"])
        val = np.median(np.asarray(entry["eval_ms"]) / base["eval_ms"])
        print(
            f"{name:<12} {np.median(entry['step_ms']):8.2f} {step:7.2f}x "
            f"{np.median(entry['eval_ms']):8.1f} {val:7.2f}x  {entry['anchors']}"
        )
    print(
        "\nms/step: median train-step wall time; val ms: median wall time of one "
        "evaluate over the validation split; vs base: median of the per-round "
        f"ratios to {next(iter(entries))}."
    )


def main(argv=None):
    args = parse_args(argv)
    config = args.trainer
    if config.output.verbose == 0:
        keras.config.disable_interactive_logging()
    data = load_data(config)
    entries = {}
    with tempfile.TemporaryDirectory() as log_dir:
        for method in config.training.methods:
            tic = time.perf_counter()
            entries[method] = setup(method, data, args, log_dir)
            print(f"warm-up {method}: {time.perf_counter() - tic:.1f} s", flush=True)
        time_rounds(entries, args)
    report(entries)
    return entries


if __name__ == "__main__":
    main()
    os._exit(0)  # skip tearing down the traced functions (slow, see step_cost)
