"""`python -m benchmarks.gain_cost`: cost of a training step per method on images.

Cost planning for the image benchmarks of the issue "Evidence that unlabeled
data helps": for each size (`SmallCNNBackbone` widths, labeled batch, unlabeled
batch) and each method, models are built exactly as the trainer builds them
(`trainers.experiment.prepare_run`, widths from `--cnn-filters`) on a dataset's
real split; their compiled train functions run on batches drawn once from the
real training stream (the image views, the labeled augmentation, the hold-out
stream) and cached in memory. After a warm-up, rounds of `--steps` steps are
timed for every variant in a fresh random order per round (noisy shared VM:
read the medians). Reported per variant: median wall ms/step and process-CPU
ms/step, and the ratio to Supervised of the same size (median of per-round
ratios).

Two costs that the cached loop leaves out are measured separately, per size:
the input pipeline (drawing batches from the live stream: the RandAugment
views run in tf.data threads, concurrently with the step in a real run) and
one evaluation of the validation split (done once per epoch).

Example:

    python -m benchmarks.gain_cost --dataset rotated_fashion_mnist \\
        --size 32,64,128:64:256 --size 16,32,64:64:128 --rounds 5
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_ssr.data.streams import make_eval_stream  # noqa: E402
from trainers.cli import parse_args as parse_run_args  # noqa: E402
from trainers.experiment import load_data, prepare_run  # noqa: E402

METHODS = ("supervised", "pseudo_label", "mean_teacher", "hpl", "hpl_joint", "l2i_v1")
BASELINE = "supervised"


def parse_size(text):
    """`"16,32,64:64:128"` -> `((16, 32, 64), 64, 128)`."""
    try:
        filters, labeled, unlabeled = text.split(":")
        return tuple(int(f) for f in filters.split(",")), int(labeled), int(unlabeled)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad --size {text!r}: use FILTERS:LABELED_BATCH:UNLABELED_BATCH, "
            "e.g. 16,32,64:64:128"
        ) from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gain_cost")
    parser.add_argument("--dataset", default="rotated_fashion_mnist")
    parser.add_argument("--label-ratio", type=float, default=0.05)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--size",
        type=parse_size,
        action="append",
        help="FILTERS:LABELED_BATCH:UNLABELED_BATCH; repeat (default: "
        "32,64,128:64:256)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cached-batches", type=int, default=5)
    parser.add_argument("--pipeline-batches", type=int, default=20)
    parser.add_argument("--json", metavar="PATH", help="save raw numbers as JSON")
    args = parser.parse_args(argv)
    args.size = args.size or [parse_size("32,64,128:64:256")]
    args.methods = tuple(m for m in args.methods.split(",") if m)
    return args


def make_config(args, size):
    """The trainer's `RunConfig` of one size (as `python -m trainers.run` flags)."""
    filters, labeled, unlabeled = size
    flags = {
        "--dataset": args.dataset,
        "--label-ratio": args.label_ratio,
        "--cnn-filters": ",".join(map(str, filters)),
        "--batch-size": labeled,
        "--unlabeled-batch-size": unlabeled,
        "--epochs": 10,
        "--steps-per-epoch": 100,
        "--verbose": 0,
    }
    return parse_run_args([str(v) for item in flags.items() for v in item])


def build_variants(args, data, log=print):
    """`{(size, method): entry}`: built, warmed-up models with cached batches."""
    variants, strategy = {}, tf.distribute.get_strategy()
    for size in args.size:
        config = make_config(args, size)
        pipeline_ms = None
        for method in args.methods:
            keras.utils.set_random_seed(0)
            run = prepare_run(method, data, config, 0, strategy, tempfile.mkdtemp())
            model, split = run.model, run.split
            if pipeline_ms is None:
                pipeline_ms = pipeline_cost(run.make_stream(), args.pipeline_batches)
            # Each method's own stream (hold-out, indices, ...), drawn once.
            batches = list(run.make_stream().take(args.cached_batches))
            stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
            cached = tf.data.Dataset.from_tensor_slices(stacked).cache().repeat()
            model.make_train_function()
            iterator = iter(cached)
            run_steps(model, iterator, args.warmup)
            variants[(size, method)] = {
                "model": model,
                "iterator": iterator,
                "ms": [],
                "cpu_ms": [],
                "pipeline": pipeline_ms,
            }
            log(f"built {method} {_label(size)}", flush=True)
            if method == BASELINE:
                variants[(size, method)]["eval"] = eval_cost(model, data, split)
    return variants


def pipeline_cost(stream, batches):
    """`(wall ms, cpu ms)` per batch of the live training stream alone."""
    iterator = iter(stream)
    next(iterator)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    return (
        (time.perf_counter() - t0) * 1e3 / batches,
        (time.process_time() - c0) * 1e3 / batches,
    )


def eval_cost(model, data, split):
    """`(wall s, cpu s)` of one evaluation of the validation split."""
    stream = make_eval_stream(data.x[split.validation], data.y[split.validation])
    model.evaluate(stream, verbose=0)
    t0, c0 = time.perf_counter(), time.process_time()
    model.evaluate(stream, verbose=0)
    return time.perf_counter() - t0, time.process_time() - c0


def run_steps(model, iterator, steps):
    logs = None
    for _ in range(steps):
        logs = model.train_function(iterator)
    logs["loss"].numpy()


def time_rounds(variants, args, log=print):
    rng = np.random.default_rng(0)
    keys = list(variants)
    for index in range(args.rounds):
        tic = time.perf_counter()
        for k in rng.permutation(len(keys)):
            entry = variants[keys[k]]
            t0, c0 = time.perf_counter(), time.process_time()
            run_steps(entry["model"], entry["iterator"], args.steps)
            entry["ms"].append((time.perf_counter() - t0) * 1e3 / args.steps)
            entry["cpu_ms"].append((time.process_time() - c0) * 1e3 / args.steps)
        log(f"round {index + 1}/{args.rounds}: {time.perf_counter() - tic:.0f} s")


def summarise(variants):
    rows = []
    for (size, method), entry in variants.items():
        base = variants[(size, BASELINE)]
        ratios = np.asarray(entry["ms"]) / np.asarray(base["ms"])
        rows.append(
            {
                "size": _label(size),
                "method": method,
                "ms": float(np.median(entry["ms"])),
                "cpu_ms": float(np.median(entry["cpu_ms"])),
                "vs_supervised": float(np.median(ratios)),
                "pipeline_ms": entry["pipeline"],
                "eval_s": base.get("eval"),
            }
        )
    return rows


def format_table(rows):
    lines = [
        "| size (filters:lb:ub) | method | ms/step | cpu ms/step | vs supervised |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['method']} | {r['ms']:.0f} | {r['cpu_ms']:.0f} | "
            f"{r['vs_supervised']:.2f}x |"
        )
    lines += ["", "| size | pipeline wall / cpu ms per batch | eval wall / cpu s |"]
    lines.append("|---|---|---|")
    for r in rows:
        if r["method"] == BASELINE:
            p, e = r["pipeline_ms"], r["eval_s"]
            lines.append(
                f"| {r['size']} | {p[0]:.0f} / {p[1]:.0f} | {e[0]:.1f} / {e[1]:.1f} |"
            )
    return "\n".join(lines)


def _label(size):
    return f"{','.join(map(str, size[0]))}:{size[1]}:{size[2]}"


def main(argv=None):
    args = parse_args(argv)
    keras.config.disable_interactive_logging()
    data = load_data(parse_run_args(["--dataset", args.dataset]))
    start = time.perf_counter()
    variants = build_variants(args, data, log=print)
    time_rounds(variants, args, log=lambda *a: print(*a, flush=True))
    rows = summarise(variants)
    print(format_table(rows))
    elapsed = time.perf_counter() - start
    print(f"\n{args.rounds} rounds x {args.steps} steps, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)
    os._exit(0)  # skip the slow teardown of many traced functions


if __name__ == "__main__":
    sys.exit(main())
