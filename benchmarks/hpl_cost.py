"""`python -m benchmarks.hpl_cost`: cost per training step of HPL vs PseudoLabel.

One process, the same model shapes and the same batches for every variant:
California Housing, 5 % labels, the real three-stream `make_train_stream` with
`TabularViews` (labeled batch 64, unlabeled batch 256, hold-out batch 64, the
trainer's defaults). Variants: `pseudo_label` (the baseline, the HPL paper's
"Baseline") and `hpl` with meta period 1 and 5 and an SGD or Adam unroll, each
with `jit_compile` off and on, for a small and a wide MLP backbone.

Protocol. Every model is built and compiled as the trainer does, its Keras
train function is traced (and XLA-compiled) by warm-up steps, then rounds of
`--steps` steps are timed round-robin over all variants (the order shuffled per
round, a backbone/jit group timed together) so that the noise of a shared VM
hits every variant alike. Each timed block calls the compiled
`model.train_function(iterator)` on an iterator over batches drawn once from
the real stream and cached in memory (no augmentation in the timed loop), and
ends by reading the loss with `.numpy()`. Reported: median ms/step over rounds
and the median over rounds of the per-round ratio to `pseudo_label` of the same
backbone and jit setting. With a meta period of 5 the step count of a block is
a multiple of 5, so every block holds the same number of bilevel steps.

Memory (on by default, `--no-memory` skips it): TensorFlow's CPU allocator
counts bytes (`tf.config.experimental.get_memory_info("CPU:0")`). After the
timing, each model runs `--memory-steps` more steps after
`reset_memory_stats`; "step MB" is the peak minus the bytes live before the
steps (activations, gradients, temporaries of one step), "state MB" the
model's variables plus its optimizers' slots.

`--breakdown` adds HPL ablations that locate the overhead of the bilevel step:
`hpl_joint` (g_phi trained on the inner loss, no bilevel step),
`hpl_nometa` (the bilevel branch is built but never taken), and
`hpl_p1_sgd_noholdout` (bilevel step every step, re-using the labeled batch's
features as hold-out features, i.e. without the extra backbone forward).

Example:

    python -m benchmarks.hpl_cost --rounds 7 --steps 50 --json hpl_cost.json
"""

import argparse
import json
import math
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import load_dataset  # noqa: E402
from keras_ssr.bilevel.head_unroll import dense_apply, unroll_head  # noqa: E402
from keras_ssr.data.split import SSRSplit  # noqa: E402
from keras_ssr.data.streams import make_train_stream  # noqa: E402
from keras_ssr.data.tabular_views import TabularViews  # noqa: E402
from keras_ssr.data.target_scaler import TargetScaler  # noqa: E402
from keras_ssr.methods.hpl import HPL  # noqa: E402
from keras_ssr.methods.registry import get_method  # noqa: E402
from keras_ssr.methods.ssr_model import _num_replicas  # noqa: E402
from keras_ssr.models.mlp_backbone import MLPBackbone  # noqa: E402
from keras_ssr.models.ssr_regressor import SSRRegressor  # noqa: E402

BASELINE = "pseudo_label"
DEFAULT_BACKBONES = ((256, 128), (1024, 1024, 1024))
# A meta period that is never reached after the warm-up: the bilevel branch is
# traced (tf.cond, apply_if) but not taken.
NEVER = 10**9


class HPLNoHoldout(HPL):
    """HPL whose bilevel step re-uses the labeled batch as the hold-out batch.

    Benchmark-only ablation: identical to `HPL._hypergradient` except that
    `features_h` are the main step's labeled features (stop-gradient), so the
    bilevel step costs no backbone forward: what is left is the head unroll,
    g_phi and the phi update. Keep in sync with `HPL._hypergradient`.
    """

    def _hypergradient(self, batch, parts):
        fixed = {k: keras.ops.stop_gradient(parts[k]) for k in parts if k != "z"}
        y_l = batch["labeled"][1]
        features_h, y_h = fixed["features_l"], y_l
        phi = self.uncertainty_learner.trainable_weights
        with tf.GradientTape() as outer:

            def inner(params):
                pred_l = dense_apply(fixed["features_l"], params)
                r = dense_apply(fixed["features_s"], params)
                z = self.log_variance(r, fixed["yhat"])
                return self.inner_loss(y_l, pred_l, fixed["yhat"], r, z, fixed["lam"])

            new_params, _ = unroll_head(
                self.head_params(), inner, **self._unroll_args()
            )
            outer_loss = self.outer_loss(features_h, y_h, new_params)
        grads = outer.gradient(outer_loss, phi)
        return [g / _num_replicas() for g in grads], outer_loss


def variant_specs(breakdown=False):
    """`(label, constructor, kwargs)` of every variant, the baseline first."""
    hpl = get_method("hpl")
    specs = [(BASELINE, get_method(BASELINE), {})]
    for period in (1, 5):
        for unroll in ("sgd", "adam"):
            kwargs = {"meta_period": period, "unroll": unroll}
            specs.append((f"hpl_p{period}_{unroll}", hpl, kwargs))
    if breakdown:
        specs += [
            ("hpl_joint", get_method("hpl_joint"), {}),
            ("hpl_nometa", hpl, {"meta_period": NEVER}),
            ("hpl_p1_sgd_noholdout", HPLNoHoldout, {"meta_period": 1}),
        ]
    return specs


def parse_hidden_units(text):
    units = tuple(int(u) for u in text.replace(" ", "").split(",") if u)
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"bad --hidden-units {text!r}")
    return units


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hpl_cost",
        description="Cost per training step of HPL against PseudoLabel.",
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds")
    parser.add_argument(
        "--steps", type=int, default=50, help="steps per variant per round"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed steps (trace/compile)"
    )
    parser.add_argument(
        "--cached-batches",
        type=int,
        default=10,
        help="batches drawn from the real stream and cycled in the timed loop",
    )
    parser.add_argument(
        "--hidden-units",
        type=parse_hidden_units,
        action="append",
        help="backbone widths, comma-separated; repeat for several backbones "
        "(default: 256,128 and 1024,1024,1024)",
    )
    parser.add_argument(
        "--jit", choices=("both", "off", "on"), default="both", help="jit_compile"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="add HPL ablations (see docstring)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip memory pass")
    parser.add_argument("--memory-steps", type=int, default=10)
    parser.add_argument("--label-ratio", type=float, default=0.05)
    parser.add_argument("--labeled-batch-size", type=int, default=64)
    parser.add_argument("--unlabeled-batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="save raw numbers as JSON")
    args = parser.parse_args(argv)
    args.hidden_units = args.hidden_units or list(DEFAULT_BACKBONES)
    # Every block must start at the same batch and hold the same number of
    # bilevel steps (period 5).
    block = math.lcm(args.cached_batches, 5)
    for name in ("steps", "warmup", "memory_steps"):
        value = getattr(args, name)
        if value < 1 or value % block:
            parser.error(
                f"--{name.replace('_', '-')} must be a positive multiple of "
                f"{block} (lcm of --cached-batches and the meta period 5)"
            )
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def cached_batches(data, split, scaler, args):
    """`--cached-batches` batches of the real training stream, cycled forever."""
    views = TabularViews.fit(data.x[split.train])
    stream = make_train_stream(
        (data.x[split.labeled], scaler.transform(data.y[split.labeled])),
        data.x[split.unlabeled],
        views,
        labeled_batch_size=args.labeled_batch_size,
        unlabeled_batch_size=args.unlabeled_batch_size,
        seed=args.seed,
    )
    batches = list(stream.take(args.cached_batches))
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).cache().repeat()


def build(constructor, kwargs, hidden_units, jit, data, split, scaler, seed):
    """A variant's model, built and compiled as `trainers.experiment` does."""
    keras.utils.set_random_seed(seed)  # same initial weights per backbone
    x_train = data.x[split.train]
    regressor = SSRRegressor(
        MLPBackbone(hidden_units, name="backbone"),
        input_mean=x_train.mean(axis=0),
        input_std=x_train.std(axis=0),
        target_mean=scaler.mean,
        target_std=scaler.std,
        name="regressor",
    )
    model = constructor(regressor, **kwargs)
    model.build((None, data.num_features))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    model.optimizer.build(model.trainable_weights_to_update())
    model.make_train_function()
    return model


def run_steps(model, iterator, steps):
    """Runs `steps` compiled train steps; returns the last logs, synchronised."""
    logs = None
    for _ in range(steps):
        logs = model.train_function(iterator)
    logs["loss"].numpy()  # wait for the last step to finish
    return logs


def state_bytes(model):
    """Bytes of the model's variables and of its optimizers' variables."""
    variables = list(model.weights) + list(model.optimizer.variables)
    for name in ("phi_optimizer", "head_optimizer"):
        optimizer = getattr(model, name, None)
        if optimizer is not None:
            variables += list(optimizer.variables)
    unique = {id(v): v for v in variables}.values()
    return sum(
        int(np.prod(v.shape))
        * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
        for v in unique
    )


def memory_pass(entry, steps):
    """Peak bytes of `steps` train steps above what was live before them."""
    device = "CPU:0"
    before = tf.config.experimental.get_memory_info(device)["current"]
    tf.config.experimental.reset_memory_stats(device)
    run_steps(entry["model"], entry["iterator"], steps)
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    return max(peak - before, 0)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    data = load_dataset("california_housing")
    split = SSRSplit.from_size(
        data.num_rows, label_ratio=args.label_ratio, seed=args.seed
    )
    scaler = TargetScaler.fit(data.y[split.labeled])
    dataset = cached_batches(data, split, scaler, args)
    jits = {"both": (False, True), "off": (False,), "on": (True,)}[args.jit]
    specs = variant_specs(args.breakdown)

    groups = {}  # (backbone, jit) -> {variant label: entry}
    for hidden_units in args.hidden_units:
        for jit in jits:
            group = groups.setdefault((hidden_units, jit), {})
            for label, constructor, kwargs in specs:
                model = build(
                    constructor,
                    kwargs,
                    hidden_units,
                    jit,
                    data,
                    split,
                    scaler,
                    args.seed,
                )
                iterator = iter(dataset)
                tic = time.perf_counter()
                run_steps(model, iterator, args.warmup)
                group[label] = {
                    "model": model,
                    "iterator": iterator,
                    "warmup_s": time.perf_counter() - tic,
                    "ms": [],
                }
                print(
                    f"warm: {label:<22} {_backbone(hidden_units):<16} jit={jit!s:<5} "
                    f"{group[label]['warmup_s']:.1f} s",
                    flush=True,
                )

    rng = np.random.default_rng(args.seed)
    keys = list(groups)
    for round_index in range(args.rounds):
        tic = time.perf_counter()
        for g in rng.permutation(len(keys)):
            group = groups[keys[g]]
            labels = list(group)
            for v in rng.permutation(len(labels)):
                entry = group[labels[v]]
                t0 = time.perf_counter()
                run_steps(entry["model"], entry["iterator"], args.steps)
                entry["ms"].append((time.perf_counter() - t0) * 1e3 / args.steps)
        print(
            f"round {round_index + 1}/{args.rounds}: {time.perf_counter() - tic:.1f} s",
            flush=True,
        )

    if not args.no_memory:
        for group in groups.values():
            for entry in group.values():
                entry["step_bytes"] = memory_pass(entry, args.memory_steps)
                entry["state_bytes"] = state_bytes(entry["model"])

    rows = summarise(groups)
    print()
    print(format_table(rows, memory=not args.no_memory))
    elapsed = time.perf_counter() - start
    print(
        f"\n{args.rounds} rounds x {args.steps} steps, labeled/unlabeled/hold-out "
        f"batch {args.labeled_batch_size}/{args.unlabeled_batch_size}/"
        f"{args.labeled_batch_size}, {os.cpu_count()} CPU, {elapsed:.0f} s total"
    )
    if args.json:
        save_json(args, rows, elapsed)
    return rows


def summarise(groups):
    rows = []
    for (hidden_units, jit), group in groups.items():
        base = np.asarray(group[BASELINE]["ms"])
        for label, entry in group.items():
            ms = np.asarray(entry["ms"])
            ratios = ms / base
            row = {
                "variant": label,
                "backbone": list(hidden_units),
                "jit": jit,
                "ms_per_step": entry["ms"],
                "ms_median": float(np.median(ms)),
                "ms_min": float(np.min(ms)),
                "ratio_per_round": ratios.tolist(),
                "ratio_median": float(np.median(ratios)),
                "ratio_of_medians": float(np.median(ms) / np.median(base)),
                "warmup_s": entry["warmup_s"],
            }
            if "step_bytes" in entry:
                row["step_bytes"] = entry["step_bytes"]
                row["state_bytes"] = entry["state_bytes"]
            rows.append(row)
    return rows


def format_table(rows, memory=True):
    header = ["variant", "backbone", "jit", "ms/step", "min", "vs PL", "IQR vs PL"]
    if memory:
        header += ["step MB", "state MB"]
    lines = []
    for row in rows:
        q1, q3 = np.percentile(row["ratio_per_round"], [25, 75])
        line = [
            row["variant"],
            _backbone(row["backbone"]),
            "on" if row["jit"] else "off",
            f"{row['ms_median']:.2f}",
            f"{row['ms_min']:.2f}",
            f"{row['ratio_median']:.3f}x",
            f"{q1:.2f}-{q3:.2f}",
        ]
        if memory:
            line += [
                f"{row['step_bytes'] / 2**20:.2f}",
                f"{row['state_bytes'] / 2**20:.2f}",
            ]
        lines.append(line)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    out = []
    for i, line in enumerate([header] + lines):
        out.append(
            "  ".join(
                str(c).ljust(w) for c, w in zip(line, widths, strict=True)
            ).rstrip()
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def save_json(args, rows, elapsed):
    config = {k: v for k, v in vars(args).items() if k != "json"}
    config["hidden_units"] = [list(h) for h in args.hidden_units]
    payload = {
        "config": config,
        "environment": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "elapsed_s": elapsed,
        "rows": rows,
    }
    with open(args.json, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"raw numbers: {args.json}")


def _backbone(hidden_units):
    return "MLP(" + ",".join(str(u) for u in hidden_units) + ")"


if __name__ == "__main__":
    main()
