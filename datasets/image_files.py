"""Image files -> uint8 arrays: parallel decode/resize in tf.data, bad files reported.

`decode_image_files` reads JPEG/PNG/BMP/GIF files in a parallel `tf.data` map
(`read_file` -> `decode_image` -> antialiased `resize` -> uint8) with prefetch,
at a chosen size. A file that cannot be read or decoded (missing, truncated,
not an image) is never dropped silently: with `on_corrupt="skip"` every such
path and the count are reported in one `CorruptImageWarning` and the other
images are returned; with `on_corrupt="raise"` a `CorruptImageError` lists them
all. `image_regression_data` builds a `RegressionData` from file paths, targets
and a protocol split, re-indexing the split after skipped files.
"""

import warnings

import numpy as np
import tensorflow as tf

from datasets.data_files import split_rows_from_names, subset_split_rows
from keras_ssr.data.regression_data import RegressionData

ON_CORRUPT = ("skip", "raise")


class CorruptImageError(ValueError):
    """Image files could not be read or decoded and `on_corrupt="raise"`."""


class CorruptImageWarning(UserWarning):
    """Image files could not be read or decoded and were skipped."""


def image_size_pair(image_size):
    """`64` -> `(64, 64)`; `(h, w)` is checked and returned as a tuple."""
    size = (image_size, image_size) if np.isscalar(image_size) else image_size
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"image_size must be an int or (height, width), got {image_size}."
        )
    return size


def decode_image_files(
    paths, image_size=64, on_corrupt="skip", name="images", batch_size=256
):
    """Decodes and resizes image files into one uint8 array.

    Args:
        paths: image file paths (str or `pathlib.Path`).
        image_size: output size, an int (square) or `(height, width)`.
        on_corrupt: `"skip"` (report each unreadable path and the count in a
            `CorruptImageWarning`, return the others) or `"raise"` (raise a
            `CorruptImageError` listing them). When no file at all can be
            read, a `CorruptImageError` (showing the first 20) is raised
            whatever `on_corrupt` says.
        name: data set name used in the reports.
        batch_size: images per tf.data batch (only affects speed).

    Returns:
        `(images, kept)`: uint8 array `(k, height, width, 3)` of the readable
        images in input order, and a bool array `(len(paths),)` marking them.

    Example:

    >>> images, kept = decode_image_files([], image_size=8)
    >>> images.shape, kept.shape
    ((0, 8, 8, 3), (0,))
    """
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}.")
    height, width = image_size_pair(image_size)
    paths = [str(p) for p in paths]
    images = np.zeros((len(paths), height, width, 3), dtype="uint8")
    kept = np.zeros(len(paths), dtype=bool)
    if paths:
        for index, batch in _image_dataset(paths, (height, width), batch_size):
            images[index] = batch
            kept[index] = True
    if paths and not kept.any():
        _raise_nothing_readable(name, paths)
    failures = {paths[i]: _failure_reason(paths[i]) for i in np.flatnonzero(~kept)}
    if failures:
        _report_failures(name, failures, on_corrupt)
        images = images[kept]
    return images, kept


def _image_dataset(paths, size, batch_size):
    def decode(index, path):
        return index, _decode_resized(path, size)

    dataset = tf.data.Dataset.from_tensor_slices(
        (np.arange(len(paths), dtype="int64"), np.array(paths, dtype=object))
    )
    dataset = dataset.map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    dataset = dataset.ignore_errors().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return dataset.as_numpy_iterator()


def _decode_resized(path, size):
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False
    )
    return tf.ensure_shape(resized_uint8(image, size), (*size, 3))


def resized_uint8(image, size):
    """An image tensor resized (antialiased) to `size`, rounded to uint8."""
    image = tf.image.resize(image, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _failure_reason(path):
    """Re-decodes one failed file eagerly to report why (only for failures)."""
    try:
        _decode_resized(tf.constant(path), (8, 8))
    except tf.errors.NotFoundError:
        return "file not found"
    except tf.errors.OpError as error:
        reason = error.message.splitlines()[0].split("} ")[-1]
        return reason.split(" [Op:")[0].strip()
    return "could not be decoded in the tf.data pipeline"


def _raise_nothing_readable(name, paths, shown=20):
    listing = "\n".join(f"  {p}: {_failure_reason(p)}" for p in paths[:shown])
    more = f"\n  ... and {len(paths) - shown} more" if len(paths) > shown else ""
    raise CorruptImageError(
        f"{name}: none of the {len(paths)} image file(s) could be read or decoded:"
        f"\n{listing}{more}\nCheck that the images are where the table says "
        "(paths are relative to the data folder)."
    )


def _report_failures(name, failures, on_corrupt):
    listing = "\n".join(f"  {path}: {reason}" for path, reason in failures.items())
    message = f"{name}: {len(failures)} image file(s) could not be read or decoded"
    if on_corrupt == "raise":
        raise CorruptImageError(
            f"{message} (on_corrupt='raise'):\n{listing}\nReplace or remove these "
            "files (and their table rows), or pass on_corrupt='skip' to skip them."
        )
    warnings.warn(
        f"{message} and were skipped (on_corrupt='skip'):\n{listing}",
        CorruptImageWarning,
        stacklevel=3,
    )


def image_regression_data(
    name,
    paths,
    targets,
    image_size=64,
    on_corrupt="skip",
    splits=None,
    labeled_order=None,
    target_name="age",
    groups=None,
    group_names=(),
    has_target=None,
):
    """A `RegressionData` (modality "image") from image files and targets.

    Args:
        name: data set name.
        paths: one image file per row.
        targets: float target per row.
        image_size: int or `(height, width)` of the decoded images.
        on_corrupt: `"skip"` or `"raise"`, see `decode_image_files`.
        splits: optional array of `"train"` / `"validation"` / `"test"` per
            row (the protocol split), or None for no fixed split.
        labeled_order: optional training row indices in the protocol's
            labeling order.
        target_name: name of the target.
        groups: optional int group id per row.
        group_names: names of the group ids.
        has_target: optional bool per row, False for rows without a target
            (see `RegressionData.has_target`).

    Returns:
        A `RegressionData` whose `split_rows` (when `splits` is given) index
        the rows that were decoded; skipped files leave every split, and the
        labeling order keeps its order without them.
    """
    images, kept = decode_image_files(paths, image_size, on_corrupt, name=name)
    split_rows = None
    if splits is not None:
        split_rows = subset_split_rows(
            split_rows_from_names(splits, labeled_order), kept
        )
    return RegressionData(
        x=images,
        y=np.asarray(targets, dtype="float32")[kept],
        feature_names=("pixels",),
        name=name,
        target_name=target_name,
        groups=None if groups is None else np.asarray(groups)[kept],
        group_names=tuple(group_names) if groups is not None else (),
        modality="image",
        split_rows=split_rows,
        has_target=None if has_target is None else np.asarray(has_target)[kept],
    )
