"""tf.data pipelines: the three training streams and the evaluation stream."""

import math

import numpy as np
import tensorflow as tf


def make_train_stream(
    labeled,
    unlabeled_x,
    views,
    labeled_batch_size=64,
    unlabeled_batch_size=256,
    holdout=None,
    holdout_batch_size=None,
    unlabeled_y=None,
    teacher=None,
    labeled_augment=None,
    unlabeled_index=False,
    seed=0,
):
    """Builds the endless per-step stream every keras-ssr method trains on.

    Each element is a dict:
    `{"labeled": (x_l, y_l), "unlabeled": (x_weak, x_strong),
    "holdout": (x_h, y_h)}` and, in benchmark mode (`unlabeled_y` given),
    `"unlabeled_targets": y_u` (never used for training, only for diagnostics),
    and with `teacher` given, `"teacher": (yhat_l, yhat_u)` (PP-SSL), and with
    `unlabeled_index`, `"unlabeled_index"`: each unlabeled row's position in
    `unlabeled_x` (int32), for methods with per-example state.
    The labeled and hold-out streams draw from their sets with independent
    shuffles; every stream repeats on its own, so the shorter set never ends an
    epoch: pass `steps_per_epoch` to `fit` (see `steps_per_epoch`).

    Args:
        labeled: tuple `(x, y)` of labeled training rows, `y` standardised.
        unlabeled_x: unlabeled training features. When empty (every row is
            labeled), the labeled features serve as the unlabeled stream.
        views: callable `(x, seed) -> (weak, strong)`, e.g. `TabularViews`.
        labeled_batch_size: global batch size of the labeled stream.
        unlabeled_batch_size: global batch size of the unlabeled stream.
        holdout: tuple `(x, y)` for the hold-out stream; defaults to `labeled`
            (an independent sampler over the labeled set).
        holdout_batch_size: defaults to `labeled_batch_size`.
        unlabeled_y: optional ground truth of `unlabeled_x` (benchmark mode).
        teacher: optional `(yhat_l, yhat_u)`: a fixed teacher's predictions,
            in standardised target units, for the rows of `labeled` and of
            `unlabeled_x` (see `keras_ssr.models.teacher.Teacher`); each
            prediction is shuffled with its row.
        labeled_augment: optional callable `(x, seed) -> x` applied to every
            labeled batch (FixMatch's weak view of the labeled images, e.g.
            `ImageViews.weak`); the hold-out stream stays unaugmented.
        unlabeled_index: add `batch["unlabeled_index"]`.
        seed: seed of the shuffles and of the augmentation.

    Example:

    >>> import numpy as np
    >>> views = lambda x, seed: (x, x)
    >>> ds = make_train_stream(
    ...     (np.zeros((8, 2), "float32"), np.zeros(8, "float32")),
    ...     np.zeros((32, 2), "float32"), views,
    ...     labeled_batch_size=4, unlabeled_batch_size=16)
    >>> sorted(next(iter(ds)))
    ['holdout', 'labeled', 'unlabeled']
    """
    x_l, y_l = _as_arrays(*labeled)
    if len(x_l) == 0:
        raise ValueError("The labeled split is empty: give at least one label.")
    unlabeled_x = _as_inputs(unlabeled_x)
    yhat_l, yhat_u = _teacher_arrays(teacher, len(x_l), len(unlabeled_x))
    if len(unlabeled_x) == 0:
        unlabeled_x, unlabeled_y = x_l, (None if unlabeled_y is None else y_l)
        yhat_u = yhat_l
    holdout = _as_arrays(*(holdout if holdout is not None else labeled))
    labeled_rows = (x_l, y_l) if yhat_l is None else (x_l, y_l, yhat_l)
    labeled_stream = _repeated(labeled_rows, labeled_batch_size, seed)
    streams = {
        "labeled": _augmented(labeled_stream, labeled_augment, seed + 15485863),
        "holdout": _repeated(
            holdout, holdout_batch_size or labeled_batch_size, seed + 7919
        ),
        "unlabeled": _unlabeled(
            unlabeled_x,
            {"unlabeled_targets": unlabeled_y, "teacher": yhat_u},
            views,
            unlabeled_batch_size,
            seed,
            unlabeled_index,
        ),
    }
    return tf.data.Dataset.zip(streams).map(_flatten).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(
    num_labeled, num_unlabeled, labeled_batch_size, unlabeled_batch_size
):
    """Steps for one pass over the larger of the labeled and unlabeled sets."""
    return max(
        math.ceil(num_labeled / labeled_batch_size),
        math.ceil(max(num_unlabeled, 1) / unlabeled_batch_size),
    )


def make_eval_stream(x, y, batch_size=1024):
    """Finite `(x, y)` batches in target units for `evaluate`/validation."""
    x, y = _as_arrays(x, y)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)


def _as_arrays(x, y):
    return _as_inputs(x), np.asarray(y, dtype="float32")


def _as_inputs(x):
    """Float32 features; uint8 pixels and strings keep their dtype."""
    x = np.asarray(x)
    if x.dtype == np.uint8 or x.dtype.kind in "OUS":
        return x
    return x.astype("float32")


def _augmented(batches, augment, seed):
    """`batches` of `(x, y, ...)` with `augment(x, seed)` applied to `x`."""
    if augment is None:
        return batches
    return _seeded_map(
        batches, lambda rows, s: (augment(rows[0], s),) + tuple(rows[1:]), seed
    )


def _seeded_map(batches, function, seed):
    """`function(batch, s)` over `batches`, `s` a fresh stateless seed `(2,)`
    per batch drawn from `seed`: parallel, in order, reproducible."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip(batches, seeds).map(
        function, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def _repeated(arrays, batch_size, seed):
    size = len(tf.nest.flatten(arrays)[0])
    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat().batch(batch_size, drop_remainder=True)


def _unlabeled(x, extras, views, batch_size, seed, index=False):
    """Batches of `x` with their views and per-row `extras` (`None`s dropped)."""
    rows = {"x": x}
    rows.update(
        {k: np.asarray(v, "float32") for k, v in extras.items() if v is not None}
    )
    if index:
        rows["unlabeled_index"] = np.arange(len(x), dtype="int32")
    batches = _repeated(rows, batch_size, seed + 104729)
    return _seeded_map(batches, lambda batch, s: _with_views(batch, views, s), seed)


def _with_views(batch, views, seed):
    out = dict(batch)
    out["views"] = views(out.pop("x"), seed)
    return out


def _flatten(streams):
    out = {"holdout": streams["holdout"], "labeled": streams["labeled"][:2]}
    unlabeled = dict(streams["unlabeled"])
    out["unlabeled"] = unlabeled.pop("views")
    for key in ("unlabeled_targets", "unlabeled_index"):
        if key in unlabeled:
            out[key] = unlabeled[key]
    if "teacher" in unlabeled:
        out["teacher"] = (streams["labeled"][2], unlabeled["teacher"])
    return out


def _teacher_arrays(teacher, num_labeled, num_unlabeled):
    if teacher is None:
        return None, None
    yhat_l, yhat_u = (np.asarray(t, dtype="float32").reshape(-1) for t in teacher)
    if len(yhat_l) != num_labeled or len(yhat_u) != num_unlabeled:
        raise ValueError(
            f"teacher predictions must match the rows: got {len(yhat_l)} and "
            f"{len(yhat_u)} for {num_labeled} labeled and {num_unlabeled} "
            "unlabeled rows."
        )
    return yhat_l, yhat_u
