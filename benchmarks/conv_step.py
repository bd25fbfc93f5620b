"""`python -m benchmarks.conv_step`: a ResNet-50 training step, keras-ssr vs PyTorch.

The same network (ResNet-50 from random init, global average pooling, a
Dense/Linear(1) head), the same shapes (RGB `--sizes`, labeled batch 16,
unlabeled batch 16 as weak and strong views, hold-out batch 16) and the same
optimizer (Adam) in both frameworks, on this CPU:

keras-ssr (TensorFlow worker process): the compiled Keras `train_function` of
`supervised`, `pseudo_label`, `hpl_p1` (HPL, bilevel step every step) and
`hpl_p5` (every 5 steps), built and compiled as `trainers.experiment` does, on
`--cached-batches` batches drawn once from the real three-stream
`make_train_stream` (labeled batches with the weak view, unlabeled weak +
strong `ImageViews`, hold-out) of random uint8 images, cycled in memory.

PyTorch (torch worker process, `pip install -e ".[bench]"`): torchvision's
`resnet50(weights=None)` with `fc` replaced by a `Linear(2048, 1)` head, eager
mode, `torch.optim.Adam`, on the very same cached batches (uint8, converted to
float NCHW once; the ImageNet mean subtraction runs in the step as keras-ssr's
does). Steps, written here in plain torch:
- `supervised`: forward of the labeled batch, MSE, backward, Adam step.
- `plain` (PseudoLabel's peer): labeled and strong forwards in training mode,
  the weak forward in eval mode under `no_grad` (keras-ssr's pseudo-labels
  use `training=False`), MSE + lambda * pseudo-label MSE, backward, Adam.
- `hpl_meta` (HPL's peer, bilevel step every step) and `hpl_meta_p5`: the
  plain step with the uncertainty learner g_phi weighting the pseudo-label
  loss (HPL eq. 3, reference form), plus on meta steps one hold-out forward
  (eval mode, `no_grad`), a differentiable one-step SGD unroll of the Linear
  head on stop-gradient features (eq. 7, `autograd.grad(create_graph=True)`)
  and the backward of the hold-out loss to phi with its Adam step (eq. 6, 8):
  what keras-ssr's `HPL` computes.
- `hpl_authors` / `hpl_authors_p5`: the structure of the HPL authors'
  iteration (their `main_ours.py`): a meta step that runs its own forwards of
  the labeled, weak, strong and hold-out batches, all in training mode (the
  labeled, strong and hold-out ones with autograd recording although their
  features are detached), then the plain step with the weak forward in
  training mode. It shows what the issue's "PyTorch HPL" numbers measured.

OpenMP. torch runs its kernels on OpenMP threads, whose default wait policy
spins at every barrier. On this shared 2-core VM with other jobs running (load
average ~11) that made a torch supervised step 64 px ~8x slower (19.7-35.9 s
against 2.7-4.7 s with `OMP_WAIT_POLICY=PASSIVE`, alternating processes), which
would flatter keras-ssr (TensorFlow's thread pools do not spin that way). The
torch worker therefore runs with `OMP_WAIT_POLICY=PASSIVE` unless
`--torch-omp-wait-policy default` is given.

Protocol. The two workers are separate processes (TensorFlow and torch crash
in one process here) that build and warm up every variant, then wait; the
parent sends "run `--steps` steps of variant v at size s" to one worker at a
time, in a fresh random order of all (framework, variant, size) blocks per
round, so only one framework computes at any moment and the load of this
shared VM falls on all variants alike. Reported: median wall ms/step over
rounds, and medians of per-round ratios (keras-ssr PseudoLabel / torch plain,
keras-ssr HPL / keras-ssr PseudoLabel, keras-ssr HPL / torch HPL, ...).
`--steps` and `--warmup` are multiples of 5 so every block holds the same
number of meta steps.

Memory (`--memory`): one fresh process per (framework, variant, size) builds
only that model and runs `--memory-steps` steps; it reports resident memory
(VmRSS) after importing the framework, after making the batches, after
building the model, and the peak (VmHWM) over the steps.

Profile (`--profile DIR`): after the rounds, the keras-ssr worker records
TensorFlow's profiler over `--profile-steps` steps of each keras-ssr variant
(`DIR/<variant>_<size>px`, viewable in TensorBoard's Profile tab) and prints
the op-time tables of `keras_ssr.op_profile`.

Switches for the measures of BENCHMARKS.md: `--keras-optimizer keras|fused`
(Keras' Adam or `keras_ssr.optimizers.FusedAdam`), `--batch-norm
keras|fused` (`ResNet50Backbone(fused_batch_norm=...)`), `--tf-threads
INTRA,INTER` (TensorFlow thread pools; default: TensorFlow's own choice).

Example:

    python -m benchmarks.conv_step --sizes 64,112 --rounds 5
    python -m benchmarks.conv_step --sizes 64 --memory --profile /tmp/prof
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

KERAS_VARIANTS = (
    "supervised",
    "pseudo_label",
    "hpl_p1",
    "hpl_p5",
    "pseudo_label_keras_bn_adam",
    "pseudo_label_keras_bn",
    "pseudo_label_keras_adam",
    "supervised_keras_bn_adam",
)
DEFAULT_KERAS_VARIANTS = KERAS_VARIANTS[:5]
DEFAULT_TORCH_VARIANTS = (
    "supervised",
    "plain",
    "hpl_meta",
    "hpl_meta_p5",
    "hpl_authors",
)
TORCH_VARIANTS = (
    "supervised",
    "plain",
    "hpl_meta",
    "hpl_meta_p5",
    "hpl_authors",
    "hpl_authors_p5",
)
# (name, numerator, denominator) of the per-round ratios; keys are
# "framework/variant".
RATIOS = (
    ("keras supervised / torch supervised", "keras/supervised", "torch/supervised"),
    ("keras PseudoLabel / torch plain", "keras/pseudo_label", "torch/plain"),
    (
        "keras PL, Keras BN+Adam / torch plain",
        "keras/pseudo_label_keras_bn_adam",
        "torch/plain",
    ),
    (
        "keras PL / keras PL with Keras BN+Adam",
        "keras/pseudo_label",
        "keras/pseudo_label_keras_bn_adam",
    ),
    (
        "keras PL, Keras BN / keras PL",
        "keras/pseudo_label_keras_bn",
        "keras/pseudo_label",
    ),
    (
        "keras PL, Keras Adam / keras PL",
        "keras/pseudo_label_keras_adam",
        "keras/pseudo_label",
    ),
    (
        "keras sup., Keras BN+Adam / torch sup.",
        "keras/supervised_keras_bn_adam",
        "torch/supervised",
    ),
    ("keras HPL p1 / keras PseudoLabel", "keras/hpl_p1", "keras/pseudo_label"),
    ("keras HPL p5 / keras PseudoLabel", "keras/hpl_p5", "keras/pseudo_label"),
    ("keras HPL p1 / torch HPL meta", "keras/hpl_p1", "torch/hpl_meta"),
    ("keras HPL p5 / torch HPL meta p5", "keras/hpl_p5", "torch/hpl_meta_p5"),
    ("keras HPL p1 / torch authors' HPL", "keras/hpl_p1", "torch/hpl_authors"),
    ("keras HPL p5 / torch authors' p5", "keras/hpl_p5", "torch/hpl_authors_p5"),
    ("torch HPL meta / torch plain", "torch/hpl_meta", "torch/plain"),
    ("torch authors' HPL / torch plain", "torch/hpl_authors", "torch/plain"),
)
BATCH = 16
LEARNING_RATE = 1e-3
UNLABELED_WEIGHT = 1.0
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
_TAG = "CONV_STEP "


# ---------------------------------------------------------------- parent side


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.conv_step",
        description="ResNet-50 training step: keras-ssr against PyTorch.",
    )
    parser.add_argument(
        "--sizes", default="64,112", help="image sides, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps")
    parser.add_argument("--cached-batches", type=int, default=5)
    parser.add_argument(
        "--keras-variants",
        default=",".join(DEFAULT_KERAS_VARIANTS),
        help=f"comma-separated, of {', '.join(KERAS_VARIANTS)}",
    )
    parser.add_argument(
        "--torch-variants",
        default=",".join(DEFAULT_TORCH_VARIANTS),
        help=f"comma-separated, of {', '.join(TORCH_VARIANTS)}",
    )
    parser.add_argument(
        "--keras-optimizer", choices=("keras", "fused"), default="fused"
    )
    parser.add_argument("--batch-norm", choices=("keras", "fused"), default="fused")
    parser.add_argument(
        "--tf-threads", default=None, help="INTRA,INTER TensorFlow thread pools"
    )
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument(
        "--torch-omp-wait-policy",
        choices=("PASSIVE", "ACTIVE", "default"),
        default="PASSIVE",
        help="OMP_WAIT_POLICY of the torch worker (see the module docstring)",
    )
    parser.add_argument(
        "--thread-grid",
        metavar="I,J;K,L",
        help="keras-ssr only: one worker per INTRA,INTER setting (0,0: "
        "TensorFlow's default), interleaved; ratios to the first setting",
    )
    parser.add_argument("--memory", action="store_true", help="peak RSS per model")
    parser.add_argument("--memory-steps", type=int, default=10)
    parser.add_argument("--profile", metavar="DIR", help="profile keras-ssr steps")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--no-timing", action="store_true", help="skip the rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="save raw numbers as JSON")
    # Internal: worker processes.
    parser.add_argument("--worker", choices=("keras", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--batches-dir", help=argparse.SUPPRESS)
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.keras_variants = [v for v in args.keras_variants.split(",") if v]
    args.torch_variants = [v for v in args.torch_variants.split(",") if v]
    for name, valid in (
        ("keras_variants", KERAS_VARIANTS),
        ("torch_variants", TORCH_VARIANTS),
    ):
        unknown = set(getattr(args, name)) - set(valid)
        if unknown:
            parser.error(f"unknown --{name.replace('_', '-')} {sorted(unknown)}")
    for name in ("steps", "warmup"):
        if getattr(args, name) < 5 or getattr(args, name) % 5:
            parser.error(f"--{name} must be a positive multiple of 5 (meta period)")
    if args.steps % args.cached_batches and args.cached_batches % args.steps:
        parser.error("--steps and --cached-batches must divide one another")
    return args


class Worker:
    """A worker process spoken to by JSON lines on its stdin/stdout."""

    def __init__(self, framework, argv, batches_dir, extra=(), env=None):
        command = [
            sys.executable,
            "-m",
            "benchmarks.conv_step",
            *argv,
            "--worker",
            framework,
            "--batches-dir",
            batches_dir,
            *extra,
        ]
        env = dict(os.environ, **(env or {}))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.getcwd(), env.get("PYTHONPATH")) if p
        )
        self.framework = framework
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def receive(self):
        for line in self.process.stdout:
            if line.startswith(_TAG):
                return json.loads(line[len(_TAG) :])
        raise RuntimeError(f"{self.framework} worker ended without answering")

    def ask(self, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.flush()
        self.process.wait()


def torch_env(args):
    """Environment of the torch worker: its OpenMP wait policy."""
    if args.torch_omp_wait_policy == "default":
        return {}
    return {"OMP_WAIT_POLICY": args.torch_omp_wait_policy}


def run_parent(argv, args):
    start = time.perf_counter()
    print(f"load before: {_uptime()}", flush=True)
    results = {"config": vars(args), "load_before": _uptime()}
    if args.thread_grid:
        results["thread_grid"] = run_thread_grid(argv, args)
        return _finish(results, args, start)
    with tempfile.TemporaryDirectory(prefix="conv_step_") as batches_dir:
        keras_worker = Worker("keras", argv, batches_dir)
        info = keras_worker.receive()  # batches written, variants warm
        print(f"keras-ssr worker ready: {info}", flush=True)
        torch_worker = Worker("torch", argv, batches_dir, env=torch_env(args))
        print(f"torch worker ready: {torch_worker.receive()}", flush=True)
        workers = {"keras": keras_worker, "torch": torch_worker}
        if not args.no_timing:
            times = time_rounds(
                workers,
                {"keras": args.keras_variants, "torch": args.torch_variants},
                args,
            )
            results["times"] = times
            results["rss_peak_timing_workers_mib"] = {
                name: w.ask(cmd="rss")["peak_mib"] for name, w in workers.items()
            }
            print()
            print(format_times(times, args))
            print()
            print(format_ratios(times, args))
        if args.profile:
            results["profile"] = keras_worker.ask(
                cmd="profile", dir=args.profile, steps=args.profile_steps
            )["tables"]
            for key, table in results["profile"].items():
                print(f"\nkeras-ssr {key}, {args.profile_steps} steps:\n{table}")
        for worker in workers.values():
            worker.close()
        if args.memory:
            results["memory"] = measure_memory(argv, args, batches_dir)
            print()
            print(format_memory(results["memory"], args))
    _finish(results, args, start)


def _finish(results, args, start):
    results["load_after"] = _uptime()
    elapsed = time.perf_counter() - start
    print(f"\nload after: {results['load_after']}; {elapsed:.0f} s in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"raw numbers: {args.json}")


def run_thread_grid(argv, args):
    """keras-ssr steps under several TensorFlow thread settings, interleaved."""
    settings = [s.strip() for s in args.thread_grid.split(";") if s.strip()]
    base_argv = _without_option(argv, "--thread-grid")
    workers = {}
    with tempfile.TemporaryDirectory(prefix="conv_step_") as batches_dir:
        for setting in settings:
            extra = () if setting == "0,0" else ("--tf-threads", setting)
            worker = Worker("keras", base_argv, batches_dir, extra=extra)
            print(f"threads {setting}: {worker.receive()}", flush=True)
            workers[setting] = worker
        times = time_rounds(workers, {s: args.keras_variants for s in settings}, args)
        for worker in workers.values():
            worker.close()
    print(f"\n{'threads intra,inter':<20} {'variant@size':<26} ms/step  vs first")
    first = settings[0]
    for key, ms in times.items():
        setting, rest = key.split("/", 1)
        ratio = np.median(np.asarray(ms) / np.asarray(times[f"{first}/{rest}"]))
        print(f"{setting:<20} {rest:<26} {np.median(ms):7.0f}  {ratio:.3f}x")
    return times


def _without_option(argv, name):
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == name:
            skip = True
        elif not item.startswith(name + "="):
            out.append(item)
    return out


def time_rounds(workers, variants, args):
    """`{"worker/variant@size": [ms per step, one per round]}`.

    Args:
        workers: `{name: Worker}`.
        variants: `{name: [variant, ...]}` run by each worker.
    """
    blocks = [
        (framework, variant, size)
        for size in args.sizes
        for framework, names in variants.items()
        for variant in names
    ]
    times = {f"{f}/{v}@{s}": [] for f, v, s in blocks}
    rng = random.Random(args.seed)
    for round_index in range(args.rounds):
        tic = time.perf_counter()
        rng.shuffle(blocks)
        for framework, variant, size in blocks:
            answer = workers[framework].ask(
                cmd="run", variant=variant, size=size, steps=args.steps
            )
            times[f"{framework}/{variant}@{size}"].append(
                answer["wall"] * 1e3 / args.steps
            )
        print(
            f"round {round_index + 1}/{args.rounds}: "
            f"{time.perf_counter() - tic:.0f} s, load {_uptime()}",
            flush=True,
        )
    return times


def format_times(times, args):
    lines = [f"{'step':<32} " + " ".join(f"{s:>6} px" for s in args.sizes)]
    lines.append("ms/step, median over rounds (min)")
    keys = sorted({k.split("@")[0] for k in times}, key=_order)
    for key in keys:
        cells = []
        for size in args.sizes:
            ms = times.get(f"{key}@{size}")
            cells.append(f"{np.median(ms):6.0f} ({np.min(ms):4.0f})" if ms else "")
        lines.append(f"{key:<32} " + " ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def ratio_rows(times, args):
    rows = []
    for name, numerator, denominator in RATIOS:
        row = {"ratio": name}
        for size in args.sizes:
            a, b = times.get(f"{numerator}@{size}"), times.get(f"{denominator}@{size}")
            if a and b:
                per_round = np.asarray(a) / np.asarray(b)
                row[size] = {
                    "median": float(np.median(per_round)),
                    "quartiles": [float(q) for q in np.percentile(per_round, [25, 75])],
                    "per_round": per_round.tolist(),
                }
        if len(row) > 1:
            rows.append(row)
    return rows


def format_ratios(times, args):
    lines = [
        f"{'median of per-round ratios':<38} "
        + " ".join(f"{str(s) + ' px (IQR)':>20}" for s in args.sizes)
    ]
    for row in ratio_rows(times, args):
        cells = []
        for size in args.sizes:
            r = row.get(size)
            cells.append(
                f"{r['median']:.3f}x ({r['quartiles'][0]:.2f}-{r['quartiles'][1]:.2f})"
                if r
                else ""
            )
        lines.append(f"{row['ratio']:<38} " + " ".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def measure_memory(argv, args, batches_dir):
    """One fresh process per (framework, variant, size): RSS at each stage."""
    out = {}
    probes = [("keras", v) for v in args.keras_variants] + [
        ("torch", v) for v in args.torch_variants
    ]
    for size in args.sizes:
        for framework, variant in probes:
            worker = Worker(
                framework,
                argv,
                batches_dir,
                extra=("--memory-probe", f"{variant}@{size}"),
                env=torch_env(args) if framework == "torch" else None,
            )
            out[f"{framework}/{variant}@{size}"] = worker.receive()
            worker.process.wait()
            print(f"memory {framework}/{variant}@{size}: done", flush=True)
    return out


def format_memory(memory, args):
    stages = ("import", "batches", "model", "peak")
    lines = [
        "resident memory (MiB) of one process per model: after importing the "
        "framework, after the batches, after building the model; peak over the steps"
    ]
    lines.append(f"{'model':<32} " + " ".join(f"{s:>8}" for s in stages))
    for key in sorted(memory, key=lambda k: (int(k.split("@")[1]), _order(k))):
        row = memory[key]
        lines.append(f"{key:<32} " + " ".join(f"{row[s]:8.0f}" for s in stages))
    return "\n".join(lines)


def _order(key):
    framework, variant = key.split("@")[0].split("/")
    variants = KERAS_VARIANTS if framework == "keras" else TORCH_VARIANTS
    return (framework != "keras", variants.index(variant))


def _uptime():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


# ---------------------------------------------------------------- worker side


def memory_mib():
    """`(current, peak)` resident memory of this process in MiB."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.split()
        return int(fields["VmRSS"][0]) / 1024, int(fields["VmHWM"][0]) / 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


class Channel:
    """The worker's side: answers on the real stdout, everything else on stderr."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # library prints go to stderr

    def send(self, **message):
        self.out.write(_TAG + json.dumps(message) + "\n")
        self.out.flush()

    def commands(self):
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "quit":
                return
            yield command


def run_worker(args):
    channel = Channel()
    stages = {"import": memory_mib()[0]}
    backend = KerasBackend(args) if args.worker == "keras" else TorchBackend(args)
    stages["import"] = memory_mib()[0]
    if args.memory_probe:
        variant, size = args.memory_probe.split("@")
        size = int(size)
        backend.prepare_batches([size])
        stages["batches"] = memory_mib()[0]
        step = backend.build(variant, size)
        stages["model"] = memory_mib()[0]
        for _ in range(args.memory_steps):
            step()
        stages["peak"] = memory_mib()[1]
        stages["after_steps"] = memory_mib()[0]
        channel.send(**stages)
        return
    backend.prepare_batches(args.sizes)
    steps = {}
    variants = args.keras_variants if args.worker == "keras" else args.torch_variants
    if args.no_timing and not args.profile:
        variants = []  # only the batches are needed (e.g. --memory alone)
    for size in args.sizes:
        for variant in variants:
            tic = time.perf_counter()
            step = backend.build(variant, size)
            for _ in range(args.warmup):
                step()
            steps[(variant, size)] = step
            print(
                f"{args.worker} {variant}@{size}: built and warmed up in "
                f"{time.perf_counter() - tic:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    # The first call of a function after others were created is slow again.
    for step in steps.values():
        step()
    channel.send(ready=True, **backend.describe())
    for command in channel.commands():
        if command["cmd"] == "run":
            step = steps[(command["variant"], command["size"])]
            tic, cpu = time.perf_counter(), time.process_time()
            for _ in range(command["steps"]):
                step()
            channel.send(wall=time.perf_counter() - tic, cpu=time.process_time() - cpu)
        elif command["cmd"] == "rss":
            channel.send(peak_mib=memory_mib()[1])
        elif command["cmd"] == "profile":
            channel.send(
                tables=backend.profile(steps, command["dir"], command["steps"])
            )


class KerasBackend:
    """keras-ssr models and batches (imports TensorFlow)."""

    def __init__(self, args):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        if args.tf_threads:
            intra, inter = (int(t) for t in args.tf_threads.split(","))
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        import keras

        self.tf, self.keras, self.args = tf, keras, args
        self.datasets = {}

    def describe(self):
        tf = self.tf
        return {
            "tensorflow": tf.__version__,
            "keras": self.keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "optimizer": self.args.keras_optimizer,
            "batch_norm": self.args.batch_norm,
        }

    def prepare_batches(self, sizes):
        """Cached batches of the real stream per size; saved for the torch side."""
        from keras_ssr.data.image_views import ImageViews
        from keras_ssr.data.streams import make_train_stream

        tf, args = self.tf, self.args
        for size in sizes:
            path = os.path.join(args.batches_dir, f"batches_{size}.npz")
            if not os.path.exists(path):
                rng = np.random.default_rng(args.seed)
                images = rng.integers(0, 256, (320, size, size, 3), dtype=np.uint8)
                targets = rng.normal(size=64).astype("float32")
                views = ImageViews()
                stream = make_train_stream(
                    (images[:64], targets),
                    images[64:],
                    views,
                    labeled_batch_size=BATCH,
                    unlabeled_batch_size=BATCH,
                    labeled_augment=views.weak,
                    seed=args.seed,
                )
                batches = list(stream.take(args.cached_batches))
                arrays = {
                    "x_l": [b["labeled"][0] for b in batches],
                    "y_l": [b["labeled"][1] for b in batches],
                    "x_weak": [b["unlabeled"][0] for b in batches],
                    "x_strong": [b["unlabeled"][1] for b in batches],
                    "x_h": [b["holdout"][0] for b in batches],
                    "y_h": [b["holdout"][1] for b in batches],
                }
                np.savez(path, **{k: np.stack(v) for k, v in arrays.items()})
            data = dict(np.load(path))
            stacked = {
                "labeled": (data["x_l"], data["y_l"]),
                "unlabeled": (data["x_weak"], data["x_strong"]),
                "holdout": (data["x_h"], data["y_h"]),
            }
            self.datasets[size] = (
                tf.data.Dataset.from_tensor_slices(stacked).cache().repeat()
            )

    def build(self, variant, size):
        """A compiled keras-ssr model of `variant`; returns its step callable."""
        keras = self.keras
        from keras_ssr.methods.registry import get_method
        from keras_ssr.models.resnet50_backbone import ResNet50Backbone
        from keras_ssr.models.ssr_regressor import SSRRegressor
        from keras_ssr.optimizers.adam_l2 import AdamL2

        keras.utils.set_random_seed(self.args.seed)
        # "<method>_keras_bn_adam": Keras' BatchNormalization and Adam, the
        # state before this benchmark; "_keras_bn" / "_keras_adam": one of them.
        batch_norm, optimizer_name = self.args.batch_norm, self.args.keras_optimizer
        for suffix, bn, opt in (
            ("_keras_bn_adam", "keras", "keras"),
            ("_keras_bn", "keras", optimizer_name),
            ("_keras_adam", batch_norm, "keras"),
        ):
            if variant.endswith(suffix):
                variant = variant.removesuffix(suffix)
                batch_norm, optimizer_name = bn, opt
                break
        regressor = SSRRegressor(
            ResNet50Backbone(
                warn_random_init=False,
                fused_batch_norm=batch_norm == "fused",
                name="backbone",
            ),
            name="regressor",
        )
        method, kwargs = {
            "supervised": ("supervised", {}),
            "pseudo_label": ("pseudo_label", {}),
            "hpl_p1": ("hpl", {"meta_period": 1}),
            "hpl_p5": ("hpl", {"meta_period": 5}),
        }[variant]
        model = get_method(method)(
            regressor, unlabeled_weight=UNLABELED_WEIGHT, **kwargs
        )
        model.build((None, size, size, 3))
        # "fused": the trainer's optimizer (AdamL2, a FusedAdam with no L2 here).
        optimizer = {"keras": keras.optimizers.Adam, "fused": AdamL2}[optimizer_name]
        model.compile(optimizer=optimizer(LEARNING_RATE), jit_compile="auto")
        model.build_optimizers()
        model.make_train_function()
        iterator = iter(self.datasets[size])

        def step():
            return float(model.train_function(iterator)["loss"].numpy())

        step.model = model
        return step

    def profile(self, steps, log_dir, num_steps):
        from keras_ssr.op_profile import read_op_profile

        tables = {}
        for (variant, size), step in steps.items():
            model = step.model
            directory = os.path.join(log_dir, f"{variant}_{size}px")
            names = [model.optimizer.name]
            names += [
                o.name
                for o in (getattr(model, "phi_optimizer", None),)
                if o is not None
            ]
            self.tf.profiler.experimental.start(directory)
            for _ in range(num_steps):
                step()
            self.tf.profiler.experimental.stop()
            profile = read_op_profile(directory, optimizer_names=names)
            tables[f"{variant}@{size}"] = profile.table(steps=num_steps)
        return tables


class TorchBackend:
    """The PyTorch peer (imports torch, torchvision)."""

    def __init__(self, args):
        import torch
        import torchvision

        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        self.torch, self.torchvision, self.args = torch, torchvision, args
        self.batches = {}

    def describe(self):
        torch = self.torch
        return {
            "torch": torch.__version__,
            "torchvision": self.torchvision.__version__,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
        }

    def prepare_batches(self, sizes):
        torch = self.torch
        for size in sizes:
            data = np.load(os.path.join(self.args.batches_dir, f"batches_{size}.npz"))

            def images(name, data=data):
                # uint8 NHWC -> uint8 NCHW, contiguous (converted once).
                return torch.from_numpy(data[name]).permute(0, 1, 4, 2, 3).contiguous()

            def targets(name, data=data):
                return torch.from_numpy(data[name]).reshape(-1, BATCH, 1)

            self.batches[size] = {
                "x_l": images("x_l"),
                "y_l": targets("y_l"),
                "x_weak": images("x_weak"),
                "x_strong": images("x_strong"),
                "x_h": images("x_h"),
                "y_h": targets("y_h"),
            }

    def build(self, variant, size):
        return TorchStep(
            self.torch, self.torchvision, variant, self.batches[size], self.args
        )

    def profile(self, steps, log_dir, num_steps):
        return {}


class TorchStep:
    """One PyTorch training step of `variant` (see the module docstring)."""

    def __init__(self, torch, torchvision, variant, batches, args):
        nn = torch.nn
        torch.manual_seed(args.seed)
        self.torch, self.variant, self.batches = torch, variant, batches
        self.backbone = torchvision.models.resnet50(weights=None)
        self.backbone.fc = nn.Identity()
        self.head = nn.Linear(2048, 1)
        params = list(self.backbone.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
        # g_phi as keras-ssr's UncertaintyLearner: [r - yhat, r] -> 128 relu -> z.
        self.phi = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 1))
        self.phi_optimizer = torch.optim.Adam(self.phi.parameters(), lr=1e-4)
        self.mean = torch.tensor(IMAGENET_BGR_MEAN[::-1]).reshape(1, 3, 1, 1)
        self.period = 5 if variant.endswith("_p5") else 1
        self.count = 0
        self.backbone.train()

    def __call__(self):
        b = self.batches
        i = self.count % len(b["x_l"])
        batch = {k: v[i] for k, v in b.items()}
        meta = self.count % self.period == 0
        self.count += 1
        variant = self.variant.removesuffix("_p5")
        if variant == "supervised":
            return self.supervised(batch)
        if variant == "plain":
            return self.plain(batch)
        if variant == "hpl_meta":
            return self.hpl(batch, meta)
        return self.hpl_authors(batch, meta)

    def prepare(self, x):
        # keras-ssr's ResNet50Backbone: float, minus the ImageNet means (its
        # RGB -> BGR flip only reorders channels: no cost worth modelling).
        return x.float() - self.mean

    def features(self, x, train=True):
        self.backbone.train(train)
        out = self.backbone(self.prepare(x))
        self.backbone.train(True)
        return out

    def pseudo_labels(self, x, train=False):
        with self.torch.no_grad():
            return self.head(self.features(x, train=train))

    def update(self, loss):
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def supervised(self, batch):
        pred = self.head(self.features(batch["x_l"]))
        return self.update(((pred - batch["y_l"]) ** 2).mean())

    def plain(self, batch):
        pred_l = self.head(self.features(batch["x_l"]))
        yhat = self.pseudo_labels(batch["x_weak"])
        r = self.head(self.features(batch["x_strong"]))
        loss = ((pred_l - batch["y_l"]) ** 2).mean() + UNLABELED_WEIGHT * (
            (r - yhat) ** 2
        ).mean()
        return self.update(loss)

    def log_variance(self, r, yhat):
        return self.phi(self.torch.cat([r - yhat, r], dim=-1).detach())

    def inner_loss(self, pred_l, y_l, r, yhat, z):
        """L_l + lambda * L_u(z), HPL eq. 5 with eq. 3 in the reference form."""
        torch = self.torch
        unlabeled = (0.5 * (torch.exp(-z) * (yhat - r) ** 2 + z)).mean()
        return ((pred_l - y_l) ** 2).mean() + UNLABELED_WEIGHT * unlabeled

    def hpl(self, batch, meta):
        torch = self.torch
        f_l = self.features(batch["x_l"])
        f_s = self.features(batch["x_strong"])
        yhat = self.pseudo_labels(batch["x_weak"])
        pred_l, r = self.head(f_l), self.head(f_s)
        if meta:
            with torch.no_grad():
                f_h = self.features(batch["x_h"], train=False)
            self.meta_step(f_l.detach(), f_s.detach(), f_h, yhat, batch)
        with torch.no_grad():  # g_phi's input is detached: z is constant for theta
            z = self.log_variance(r, yhat)
        return self.update(self.inner_loss(pred_l, batch["y_l"], r, yhat, z))

    def meta_step(self, f_l, f_s, f_h, yhat, batch):
        """Eq. 6-8: unroll the head one SGD step, hold-out loss, d/dphi, Adam."""
        torch = self.torch
        weight = self.head.weight.detach().requires_grad_()
        bias = self.head.bias.detach().requires_grad_()

        def head(features, w, b):
            return features @ w.t() + b

        r = head(f_s, weight, bias)
        z = self.log_variance(r, yhat)
        inner = self.inner_loss(head(f_l, weight, bias), batch["y_l"], r, yhat, z)
        g_w, g_b = torch.autograd.grad(inner, (weight, bias), create_graph=True)
        new_w, new_b = weight - LEARNING_RATE * g_w, bias - LEARNING_RATE * g_b
        outer = ((head(f_h, new_w, new_b) - batch["y_h"]) ** 2).mean()
        self.phi_optimizer.zero_grad(set_to_none=True)
        outer.backward(inputs=list(self.phi.parameters()))
        self.phi_optimizer.step()

    def hpl_authors(self, batch, meta):
        """The structure of the authors' iteration (see the module docstring)."""
        torch = self.torch
        if meta:
            f_l = self.features(batch["x_l"]).detach()
            yhat = self.pseudo_labels(batch["x_weak"], train=True)
            f_s = self.features(batch["x_strong"]).detach()
            f_h = self.features(batch["x_h"]).detach()
            self.meta_step(f_l, f_s, f_h, yhat, batch)
        pred_l = self.head(self.features(batch["x_l"]))
        yhat = self.pseudo_labels(batch["x_weak"], train=True)
        r = self.head(self.features(batch["x_strong"]))
        with torch.no_grad():
            z = self.log_variance(r, yhat)
        return self.update(self.inner_loss(pred_l, batch["y_l"], r, yhat, z))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
    else:
        run_parent(argv, args)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the slow teardown of many traced models
