"""`python -m benchmarks.image_pipeline`: cost of the live image augmentation.

Two measurements, one process, interleaved repetitions (these shared 2-core VMs
switch speed every few seconds, so only ratios measured side by side mean much):

`--part randaugment`: seconds per batch of `--batch-size` random uint8 RGB
images (`--image-size`) through a `tf.data` map
(over a cached batched dataset)
for each RandAugment implementation with 3 operations at magnitude 4 of 10,
the map sequential and without prefetch so each batch's time is its compute
cost on one core:
`own` (`ImageViews.strong`: crop/flip + per-image RandAugment, stateless),
`core_batch` (`keras.layers.RandAugment` on the batch: one op choice for the
whole batch), `core_per_image` (the same layer mapped per image before
`batch`, which FixMatch's per-image choice needs) and `keras_cv`
(`keras_cv.layers.RandAugment`, per image; only if keras-cv is installed).

`--part throughput`: steps/s of a PseudoLabel train step (SmallCNNBackbone on
rotated_mnist, 10 % labels, labeled batch 64, unlabeled batch 256) fed by the
live stream (`make_train_stream` with `ImageViews` weak + strong in tf.data
and the weak view on labeled batches) against the same compiled step fed by
`--cached-batches` batches drawn once from that stream and kept in memory.
Each round times `--steps` steps of each feed (order alternating); reported:
median steps/s of each and the median of per-round ratios live / cached.

Example:

    python -m benchmarks.image_pipeline --part randaugment
    python -m benchmarks.image_pipeline --part throughput --rounds 8
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import load_dataset, rotated_mnist  # noqa: E402
from keras_ssr.data.image_views import ImageViews  # noqa: E402
from keras_ssr.data.split import SSRSplit  # noqa: E402
from keras_ssr.data.streams import make_train_stream  # noqa: E402
from keras_ssr.methods.pseudo_label import PseudoLabel  # noqa: E402
from keras_ssr.models.small_cnn_backbone import SmallCNNBackbone  # noqa: E402
from keras_ssr.models.ssr_regressor import SSRRegressor  # noqa: E402

NUM_OPS, MAGNITUDE = 3, 4.0


def randaugment_variants():
    """`{name: (per_image, fn(x, seed))}` of the implementations available."""
    own = ImageViews(num_ops=NUM_OPS, magnitude=MAGNITUDE)
    core = keras.layers.RandAugment(
        value_range=(0, 255), num_ops=NUM_OPS, factor=MAGNITUDE / 10
    )
    variants = {
        "own": (False, own.strong),
        "core_batch": (False, lambda x, s: core(tf.cast(x, "float32"))),
        "core_per_image": (True, lambda x, s: core(tf.cast(x, "float32"))),
    }
    try:
        import keras_cv
    except ImportError:
        return variants
    kcv = keras_cv.layers.RandAugment(
        value_range=(0, 255), augmentations_per_image=NUM_OPS, magnitude=MAGNITUDE / 10
    )
    variants["keras_cv"] = (False, lambda x, s: kcv(tf.cast(x, "float32")))
    return variants


def augmented_batches(images, batch_size, per_image, fn):
    """An endless dataset of augmented batches (per image: map before batch)."""
    dataset = tf.data.Dataset.from_tensor_slices(images)
    if not per_image:
        dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.cache().repeat()
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    # Sequential map, no prefetch: the time of a batch is its compute cost,
    # not a buffer filled while another variant was being timed.
    dataset = tf.data.Dataset.zip(dataset, seeds).map(fn)
    if per_image:
        dataset = dataset.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.map_parallelization = False
    options.experimental_optimization.inject_prefetch = False
    return iter(dataset.with_options(options))


def time_batches(iterator, count):
    start = time.perf_counter()
    for _ in range(count):
        next(iterator).numpy()
    return (time.perf_counter() - start) / count


def run_randaugment(args):
    shape = (args.batch_size * 4, args.image_size, args.image_size, 3)
    images = np.random.default_rng(0).integers(0, 256, shape).astype("uint8")
    iterators = {
        name: augmented_batches(images, args.batch_size, per_image, fn)
        for name, (per_image, fn) in randaugment_variants().items()
    }
    for iterator in iterators.values():
        time_batches(iterator, 3)  # trace and fill the caches
    seconds = {name: [] for name in iterators}
    names = list(iterators)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(time_batches(iterators[name], args.batches))
    print(
        f"RandAugment ({NUM_OPS} ops, magnitude {MAGNITUDE:g}), batch "
        f"{args.batch_size} x {args.image_size}x{args.image_size}x3, "
        f"{args.rounds} rounds x {args.batches} batches"
    )
    own = statistics.median(seconds["own"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"  {name:15s} median {median * 1000:7.1f} ms/batch  "
            f"min {min(values) * 1000:7.1f}  x{median / own:5.2f} of own"
        )


def throughput_setup(args):
    """The model, the live iterator and the cached iterator (same batches)."""
    data = load_dataset("rotated_mnist")
    split = SSRSplit.from_protocol(data.split_rows, label_ratio=0.1, seed=0)
    y_l = data.y[split.labeled]
    mean, std = float(y_l.mean()), float(y_l.std())
    views = ImageViews(**rotated_mnist.VIEWS_CONFIG)
    stream = make_train_stream(
        (data.x[split.labeled], (y_l - mean) / std),
        data.x[split.unlabeled],
        views,
        labeled_batch_size=64,
        unlabeled_batch_size=256,
        labeled_augment=views.weak,
        seed=0,
    )
    batches = list(stream.take(args.cached_batches))
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    cached = tf.data.Dataset.from_tensor_slices(stacked).cache().repeat()
    keras.utils.set_random_seed(0)
    regressor = SSRRegressor(
        SmallCNNBackbone(args.filters), target_mean=mean, target_std=std
    )
    model = PseudoLabel(regressor, unlabeled_weight=1.0)
    model.build((None,) + data.input_shape)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build_optimizers()
    model.make_train_function()
    return model, {"live": iter(stream), "cached": iter(cached.prefetch(2))}


def time_steps(model, iterator, steps):
    start = time.perf_counter()
    logs = None
    for _ in range(steps):
        logs = model.train_function(iterator)
    logs["loss"].numpy()
    return steps / (time.perf_counter() - start)


def run_throughput(args):
    model, iterators = throughput_setup(args)
    for iterator in iterators.values():
        time_steps(model, iterator, 3)  # trace and warm the pipeline
    rates = {name: [] for name in iterators}
    ratios = []
    for r in range(args.rounds):
        order = ("live", "cached") if r % 2 == 0 else ("cached", "live")
        for name in order:
            rates[name].append(time_steps(model, iterators[name], args.steps))
        ratios.append(rates["live"][-1] / rates["cached"][-1])
    print(
        f"PseudoLabel + SmallCNNBackbone{args.filters} on rotated_mnist, "
        f"batches 64 labeled + 256 unlabeled (weak + strong), {args.rounds} "
        f"rounds x {args.steps} steps"
    )
    for name, values in rates.items():
        print(
            f"  {name:7s} median {statistics.median(values):6.2f} steps/s  "
            f"max {max(values):6.2f}"
        )
    quartiles = np.percentile(ratios, [25, 75])
    print(
        f"  live / cached: median {statistics.median(ratios):.2f} "
        f"(IQR {quartiles[0]:.2f}-{quartiles[1]:.2f}; target >= 0.8)"
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.image_pipeline",
        description="Cost of the live image augmentation pipeline.",
    )
    parser.add_argument("--part", choices=("randaugment", "throughput"), required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=5, help="batches per round")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    parser.add_argument("--cached-batches", type=int, default=10)
    parser.add_argument(
        "--filters",
        type=lambda text: tuple(int(f) for f in text.split(",")),
        default=(32, 64, 128),
        help="SmallCNNBackbone filters, comma-separated",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    {"randaugment": run_randaugment, "throughput": run_throughput}[args.part](args)


if __name__ == "__main__":
    main()
