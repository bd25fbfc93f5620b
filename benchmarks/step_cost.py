"""`python -m benchmarks.step_cost`: cost per training step of HPL/L2I vs PseudoLabel.

One process, the same model shapes and the same batches for every variant:
California Housing, 5 % labels, the real three-stream `make_train_stream` with
`TabularViews` (labeled batch 64, unlabeled batch 256, hold-out batch 64, the
trainer's defaults). Variants: `pseudo_label` (the baseline, the HPL paper's
"Baseline") and `hpl` with meta period 1 and 5 and an SGD or Adam unroll, each
with `jit_compile` off and on, for a small and a wide MLP backbone. With
`--suite l2i`: `l2i_v1` and `l2i_v2` (pseudo-label imputer) with a head-only and
a full unroll instead. With `--suite baselines`: the registered baselines of the
HPL paper (`BASELINE_SUITE`) with their default flags, timed against
`supervised` (the suite's first variant, its ratio baseline), `pseudo_label`
and `hpl` for reference (the paper's Table 5); methods with per-example
state get the unlabeled row indices in the cached batches and their `prepare`
hook runs, as in the trainer.

Protocol. Every model is built and compiled as the trainer does, its Keras
train function is traced (and XLA-compiled) by warm-up steps, then rounds of
`--steps` steps are timed round-robin over all variants (the order shuffled per
round, a backbone/jit group timed together) so that the noise of a shared VM
hits every variant alike. Each timed block calls the compiled
`model.train_function(iterator)` on an iterator over batches drawn once from
the real stream and cached in memory (no augmentation in the timed loop), and
ends by reading the loss with `.numpy()`. Blocks are short (default 20 rounds
x 10 steps) because these VMs switch between two speeds (sometimes only one
core's worth of CPU) every few seconds: the variants of a group are then timed
within ~1-3 s of each other, and the median of per-round ratios ignores the
rounds a switch fell into. Reported per variant: median and min wall ms/step,
the median over rounds of the per-round ratio to `pseudo_label` of the same
backbone and jit setting (and its interquartile range), the same for the
process CPU time per step (`time.process_time`, which a throttled VM inflates
less than wall time), and the number of ops in the traced step function. With
a meta period of 5 the step count of a block is a multiple of 5, so every block
holds the same number of bilevel steps.

Memory (`--memory`, off by default, about 1 min more): with oneDNN on (the default)
`tf.config.experimental.get_memory_info("CPU:0")` reported 0 bytes live while
the models' variables existed and a peak of 0 over graph-mode steps of a small
MLP (only large buffers, e.g. XLA's, were counted), and RSS hardly moves after
the first steps (malloc keeps freed memory). So one child process re-builds every
variant with oneDNN off and TensorFlow's BFC allocator on CPU
(`TF_ENABLE_ONEDNN_OPTS=0 TF_CPU_ALLOCATOR_USE_BFC=true`), where
`tf.config.experimental.get_memory_info("CPU:0")` counts every byte. After the
warm-up each model runs `--memory-steps` steps after `reset_memory_stats`:
"step MB" is the peak minus the bytes live before (activations, gradients and
temporaries of one step), "state MB" the model's variables plus its
optimizers' slots. Kernels differ from the timed run (no oneDNN). With XLA the
step peak is the same from run to run; without it, it moves by several MB
between runs (the order in which the executor's threads run independent ops).

`--breakdown` adds HPL ablations that locate the overhead of the bilevel step:
`hpl_joint` (g_phi trained on the inner loss, no bilevel step),
`hpl_nometa` (the bilevel branch is built but never taken), and
`hpl_p1_sgd_noholdout` (bilevel step every step, re-using the labeled batch's
features as hold-out features, i.e. without the extra backbone forward).

Example:

    python -m benchmarks.step_cost --json hpl_cost.json
    python -m benchmarks.step_cost --breakdown --hidden-units 256,128
    python -m benchmarks.step_cost --memory --rounds 3
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import load_dataset  # noqa: E402
from keras_ssr.data.split import SSRSplit  # noqa: E402
from keras_ssr.data.streams import make_train_stream  # noqa: E402
from keras_ssr.data.tabular_views import TabularViews  # noqa: E402
from keras_ssr.data.target_scaler import TargetScaler  # noqa: E402
from keras_ssr.methods.hpl import HPL  # noqa: E402
from keras_ssr.methods.registry import get_method, method_names  # noqa: E402
from keras_ssr.methods.run_context import RunContext  # noqa: E402
from keras_ssr.models.mlp_backbone import MLPBackbone  # noqa: E402
from keras_ssr.models.ssr_regressor import SSRRegressor  # noqa: E402

BASELINE = "pseudo_label"
# `--suite baselines`: supervised (the ratio baseline), then the HPL paper's
# baselines that are registered, and HPL itself (its Table 5).
BASELINE_SUITE = (
    "supervised",
    BASELINE,
    "hpl",
    "pi_model",
    "temporal_ensembling",
    "simregmatch",
    "rankup",
    "rankup_no_rda",
    "ssdkl",
    "tnnr",
    "ucvme",
    "clss",
)
DEFAULT_BACKBONES = ((256, 128), (1024, 1024, 1024))
# A meta period that is never reached after the warm-up: the bilevel branch is
# traced (tf.cond, apply_if) but not taken.
NEVER = 10**9
# Freeing ~20 traced models (their functions leave TensorFlow's function
# library one by one) took ~30 s here; `main` parks them here and the command
# line entry point ends with `os._exit` instead of tearing them down.
_LIVE = []


class HPLNoHoldout(HPL):
    """HPL whose bilevel step re-uses the labeled batch as the hold-out batch.

    Benchmark-only ablation: the outer batch is the main step's labeled
    features (already computed), so the bilevel step costs no backbone forward:
    what is left is the head unroll, g_phi and the phi update.
    """

    def holdout_features(self, batch, parts):
        return parts["features_l"], batch["labeled"][1]


def variant_specs(breakdown=False, suite="hpl"):
    """`(label, constructor, kwargs)` of every variant, the baseline first."""
    if suite == "baselines":
        names = [name for name in BASELINE_SUITE if name in method_names()]
        return [(name, get_method(name), {}) for name in names]
    if suite == "l2i":
        return [(BASELINE, get_method(BASELINE), {})] + [
            (f"{name}_{unroll}", get_method(name), {"unroll": unroll})
            for name in ("l2i_v1", "l2i_v2")
            for unroll in ("head", "full")
        ]
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
        prog="python -m benchmarks.step_cost",
        description="Cost per training step of HPL against PseudoLabel.",
    )
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds")
    parser.add_argument(
        "--steps", type=int, default=10, help="steps per variant per round"
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps (trace/compile)"
    )
    parser.add_argument(
        "--cached-batches",
        type=int,
        default=5,
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
    parser.add_argument(
        "--suite",
        choices=("hpl", "l2i", "baselines"),
        default="hpl",
        help="hpl: HPL variants; l2i: L2I V1/V2 with head and full unrolls; "
        "baselines: the HPL paper's baselines against supervised",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also measure bytes per step in a child process (see docstring)",
    )
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
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


def cached_batches(data, split, scaler, args, views):
    """`--cached-batches` batches of the real training stream, cycled forever."""
    stream = make_train_stream(
        (data.x[split.labeled], scaler.transform(data.y[split.labeled])),
        data.x[split.unlabeled],
        views,
        labeled_batch_size=args.labeled_batch_size,
        unlabeled_batch_size=args.unlabeled_batch_size,
        unlabeled_index=args.suite == "baselines",
        seed=args.seed,
    )
    batches = list(stream.take(args.cached_batches))
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).cache().repeat()


def build(constructor, kwargs, hidden_units, jit, data, split, scaler, seed, views):
    """A variant's model, built, compiled and prepared as `trainers.experiment`
    does."""
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
    if getattr(constructor, "uses_unlabeled_index", False):
        kwargs = {**kwargs, "num_unlabeled": len(split.unlabeled)}
    model = constructor(regressor, **kwargs)
    model.build((None, data.num_features))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    model.build_optimizers()
    model.prepare(
        RunContext(
            log_dir="",
            unlabeled_x=data.x[split.unlabeled],
            views=views,
            labeled=(data.x[split.labeled], scaler.transform(data.y[split.labeled])),
        )
    )
    model.make_train_function()
    return model


def run_steps(model, iterator, steps):
    """Runs `steps` compiled train steps; returns the last logs, synchronised."""
    logs = None
    for _ in range(steps):
        logs = model.train_function(iterator)
    logs["loss"].numpy()  # wait for the last step to finish
    return logs


def graph_ops(model, iterator):
    """Nodes in the traced train function, cond branches included, or None.

    A rough size of the step before Grappler/XLA: on a small model the time of
    a graph step on CPU follows the number of ops more than their FLOPs. Reads
    Keras internals (the `tf.function` in `train_function`'s closure).
    """
    try:
        cells = model.train_function.__closure__ or ()
        function = next(
            c.cell_contents
            for c in cells
            if hasattr(c.cell_contents, "get_concrete_function")
        )
        graph = function.get_concrete_function(iterator).graph.as_graph_def()
    except (StopIteration, AttributeError, TypeError, ValueError):
        return None
    return len(graph.node) + sum(len(f.node_def) for f in graph.library.function)


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


MEMORY_ENV = {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPU_ALLOCATOR_USE_BFC": "true"}
MEMORY_TAG = "HPL_COST_MEMORY_JSON "


def memory_pass(entry, steps):
    """Peak bytes of `steps` train steps above what was live before them."""
    device = "CPU:0"
    before = tf.config.experimental.get_memory_info(device)["current"]
    tf.config.experimental.reset_memory_stats(device)
    run_steps(entry["model"], entry["iterator"], steps)
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    return max(peak - before, 0)


def build_all(args, log=print):
    """Builds and warms up every variant: `{(backbone, jit): {label: entry}}`."""
    data = load_dataset("california_housing")
    split = SSRSplit.from_size(
        data.num_rows, label_ratio=args.label_ratio, seed=args.seed
    )
    scaler = TargetScaler.fit(data.y[split.labeled])
    views = TabularViews.fit(data.x[split.train])
    dataset = cached_batches(data, split, scaler, args, views)
    jits = {"both": (False, True), "off": (False,), "on": (True,)}[args.jit]
    groups = {}
    for hidden_units in args.hidden_units:
        for jit in jits:
            group = groups.setdefault((hidden_units, jit), {})
            for label, constructor, kwargs in variant_specs(args.breakdown, args.suite):
                model = build(
                    constructor,
                    kwargs,
                    hidden_units,
                    jit,
                    data,
                    split,
                    scaler,
                    args.seed,
                    views,
                )
                iterator = iter(dataset)
                tic = time.perf_counter()
                run_steps(model, iterator, args.warmup)  # trace / XLA-compile
                entry = {"model": model, "iterator": iterator, "ms": [], "cpu_ms": []}
                entry["warmup_s"] = time.perf_counter() - tic
                entry["graph_ops"] = graph_ops(model, iterator)
                group[label] = entry
                log(
                    f"warm-up {label:<22} {_backbone(hidden_units):<16} "
                    f"jit={'on' if jit else 'off':<3} {entry['warmup_s']:.1f} s"
                )
    # The first call of a function after other functions were created is slow
    # again (~0.2-0.6 s here, no retracing): one more untimed pass over all.
    tic = time.perf_counter()
    for group in groups.values():
        for entry in group.values():
            run_steps(entry["model"], entry["iterator"], args.warmup)
    log(f"second warm-up pass over all variants: {time.perf_counter() - tic:.1f} s")
    return groups


def time_rounds(groups, args, log=print):
    """Round-robin timing; appends each round's ms/step to `entry["ms"]`.

    Per round the (backbone, jit) groups and the variants inside each group
    are visited in a fresh random order; the variants of a group are timed
    back to back, so the per-round ratios to the baseline compare blocks run
    seconds apart.
    """
    rng = np.random.default_rng(args.seed)
    keys = list(groups)
    for round_index in range(args.rounds):
        tic = time.perf_counter()
        for g in rng.permutation(len(keys)):
            group = groups[keys[g]]
            labels = list(group)
            for v in rng.permutation(len(labels)):
                entry = group[labels[v]]
                t0, c0 = time.perf_counter(), time.process_time()
                run_steps(entry["model"], entry["iterator"], args.steps)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                entry["ms"].append(wall * 1e3 / args.steps)
                entry["cpu_ms"].append(cpu * 1e3 / args.steps)
        log(f"round {round_index + 1}/{args.rounds}: {time.perf_counter() - tic:.1f} s")


def memory_child(args):
    """Runs in the child process of `--memory`: prints bytes per variant."""
    groups = build_all(args, log=lambda *a: print(*a, file=sys.stderr, flush=True))
    _LIVE.append(groups)
    out = {}
    for (hidden_units, jit), group in groups.items():
        for label, entry in group.items():
            key = _key(label, hidden_units, jit)
            out[key] = {
                "step_bytes": memory_pass(entry, args.memory_steps),
                "state_bytes": state_bytes(entry["model"]),
            }
    print(MEMORY_TAG + json.dumps(out), flush=True)


def measure_memory(argv):
    """Runs `memory_child` in a fresh process with the counting allocator."""
    env = dict(os.environ, **MEMORY_ENV)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.getcwd(), env.get("PYTHONPATH")) if p
    )
    command = [sys.executable, "-m", "benchmarks.step_cost", *argv, "--memory-child"]
    done = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    for line in done.stdout.splitlines():
        if line.startswith(MEMORY_TAG):
            return json.loads(line[len(MEMORY_TAG) :])
    raise RuntimeError("memory child printed no result")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return None
    start = time.perf_counter()
    groups = build_all(args, log=lambda *a: print(*a, flush=True))
    _LIVE.append(groups)
    time_rounds(groups, args, log=lambda *a: print(*a, flush=True))
    memory = None
    if args.memory:
        tic = time.perf_counter()
        memory = measure_memory([a for a in argv if a != "--memory"])
        print(f"memory child process: {time.perf_counter() - tic:.0f} s", flush=True)
    rows = summarise(groups, memory)
    print()
    print(format_table(rows, memory=memory is not None))
    elapsed = time.perf_counter() - start
    print(
        f"\n{args.rounds} rounds x {args.steps} steps, labeled/unlabeled/hold-out "
        f"batch {args.labeled_batch_size}/{args.unlabeled_batch_size}/"
        f"{args.labeled_batch_size}, {os.cpu_count()} CPU, {elapsed:.0f} s total.\n"
        "ms/step, min: wall time per step (median, best round); vs <base>: median "
        f"of per-round ratios to {rows[0]['variant']} (same backbone and jit), IQR "
        "its quartiles;\ncpu ms, cpu vs <base>: the same with process CPU time, "
        "steadier when the VM is throttled; ops: nodes of the traced step function."
    )
    if args.json:
        save_json(args, rows, elapsed)
    return rows


def summarise(groups, memory=None):
    rows = []
    for (hidden_units, jit), group in groups.items():
        baseline = group[next(iter(group))]  # the suite's first variant
        base = np.asarray(baseline["ms"])
        base_cpu = np.asarray(baseline["cpu_ms"])
        for label, entry in group.items():
            ms = np.asarray(entry["ms"])
            ratios = ms / base
            cpu_ratios = np.asarray(entry["cpu_ms"]) / base_cpu
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
                "ratio_of_mins": float(np.min(ms) / np.min(base)),
                "cpu_ms_per_step": entry["cpu_ms"],
                "cpu_ms_median": float(np.median(entry["cpu_ms"])),
                "cpu_ratio_per_round": cpu_ratios.tolist(),
                "cpu_ratio_median": float(np.median(cpu_ratios)),
                "warmup_s": entry["warmup_s"],
                "graph_ops": entry["graph_ops"],
            }
            if memory is not None:
                row.update(memory[_key(label, hidden_units, jit)])
            rows.append(row)
    return rows


def format_table(rows, memory=True):
    base = "PL" if rows[0]["variant"] == BASELINE else rows[0]["variant"]
    header = [
        "variant",
        "backbone",
        "jit",
        "ms/step",
        "min",
        f"vs {base}",
        "IQR",
        "cpu ms",
        f"cpu vs {base}",
        "ops",
    ]
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
            f"{row['cpu_ms_median']:.2f}",
            f"{row['cpu_ratio_median']:.3f}x",
            str(row["graph_ops"]),
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


def _key(label, hidden_units, jit):
    return f"{label}|{_backbone(hidden_units)}|jit={int(jit)}"


def _backbone(hidden_units):
    return "MLP(" + ",".join(str(u) for u in hidden_units) + ")"


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the slow teardown of the models (see `_LIVE`)
