"""`python -m benchmarks.jit_compile`: training steps/s with `--jit-compile` off and on.

For each method, two models are built exactly as `python -m trainers.run`
builds them (`trainers.experiment.prepare_run`, California Housing, 5 % labels,
the default MLP and batch sizes), one with `jit_compile` off (Keras' "auto",
which is off on CPU) and one with `--jit-compile`. Both are warmed up (traced,
and XLA-compiled), then `--rounds` rounds time `--steps` steps of each, in a
shuffled order per round, with the compiled `model.train_function` on batches
drawn once from the trainer's real input stream. Reported per method: median
steps/s of each and the median over rounds of the per-round ratio on/off
(robust to the speed switches of shared VMs).

Example:

    python -m benchmarks.jit_compile --methods supervised,hpl --rounds 5
"""

import argparse
import random
import statistics
import time

import keras
import tensorflow as tf

from datasets import load_dataset
from trainers.cli import parse_args as trainer_config
from trainers.experiment import prepare_run

DEFAULT_METHODS = "supervised,pseudo_label,mean_teacher,hpl,l2i_v1,ppssl"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.jit_compile")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps")
    parser.add_argument("--cached-batches", type=int, default=20)
    return parser.parse_args(argv)


def build(method, jit_compile, data, cached, num_batches=20):
    """A trainer-built model, its train function and an iterator over the
    method's cached batches (drawn once from the trainer's stream)."""
    config = trainer_config(
        ["--steps-per-epoch", "100"] + (["--jit-compile"] if jit_compile else [])
    )
    keras.utils.set_random_seed(0)
    run = prepare_run(method, data, config, 0, tf.distribute.get_strategy(), None)
    model = run.model
    if method not in cached:
        cached[method] = _stack(list(run.make_stream().take(num_batches)))
    batches = tf.data.Dataset.from_tensor_slices(cached[method]).repeat()
    model.make_train_function()
    return model, model.train_function, iter(batches)


def _stack(batches):
    return tf.nest.map_structure(lambda *t: tf.stack(t), *batches)


def run_block(function, iterator, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = function(iterator)
    float(logs["loss"])
    return steps / (time.perf_counter() - start)


def main(argv=None):
    args = parse_args(argv)
    data = load_dataset("california_housing")
    cached, rows = {}, []
    for method in args.methods.split(","):
        variants = {
            jit: build(method, jit, data, cached, args.cached_batches)
            for jit in (False, True)
        }
        assert variants[True][0].jit_compile and not variants[False][0].jit_compile
        for _, function, iterator in variants.values():
            run_block(function, iterator, args.warmup)
        rates = {False: [], True: []}
        for _ in range(args.rounds):
            for jit in random.sample([False, True], 2):
                _, function, iterator = variants[jit]
                rates[jit].append(run_block(function, iterator, args.steps))
        ratio = statistics.median(
            on / off for on, off in zip(rates[True], rates[False], strict=True)
        )
        row = dict(
            method=method,
            off_steps_per_s=statistics.median(rates[False]),
            on_steps_per_s=statistics.median(rates[True]),
            on_over_off=ratio,
        )
        rows.append(row)
        print(
            f"{method:<14} jit off {row['off_steps_per_s']:7.1f} steps/s   "
            f"jit on {row['on_steps_per_s']:7.1f} steps/s   on/off x{ratio:.2f}",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
