"""`ImageViews`: FixMatch weak and strong (per-image RandAugment) image views."""

import math

import tensorflow as tf

# FixMatch's RandAugment operations (Sohn et al. 2020, Table 12), in a fixed
# order: an operation's id is its index here.
OPS = (
    "identity",
    "auto_contrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
PHOTOMETRIC_OPS = tuple(op for op in OPS if op not in GEOMETRIC_OPS)
OP_SETS = {
    "all": OPS,
    # Pixel values only: keeps every geometric target (angle, position, size).
    "photometric": PHOTOMETRIC_OPS,
    # Also shifts the image: keeps orientation targets such as an angle.
    "orientation_preserving": PHOTOMETRIC_OPS + ("translate_x", "translate_y"),
}

# Strength of each operation at magnitude 10 of 10 (RandAugment's scale).
_MAX_ROTATE_DEGREES = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 0.3  # fraction of the image side
_MAX_ENHANCE = 0.9  # enhancement factor 1 +- 0.9
_MAX_POSTERIZE_DROP = 4  # bits removed
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's "L" mode


class ImageViews:
    """Makes FixMatch's (weak, strong) views of a batch of images in tf.data.

    Weak view: reflect-pad by `pad_fraction` of each side, crop back to the
    original size at a random offset, and (if `flip`) flip horizontally with
    probability 1/2. Strong view: an independent weak view followed by
    RandAugment with the operations drawn **per image**, as in FixMatch: each
    image gets its own `num_ops` operations, drawn uniformly from `ops`.
    Everything is vectorised over the batch with stateless TF ops (one batched
    projective transform per operation slot for the geometric operations and
    a masked selection for the pixel operations): no Python per example, and
    the same `seed` gives the same views.

    The operations and their strength at magnitude 10 of 10: rotate +-30
    degrees, shear_x/shear_y +-0.3, translate_x/translate_y +-30 % of the side,
    brightness/color/contrast/sharpness factor 1 +- 0.9, posterize to 8-4 bits,
    solarize above a threshold of 0; identity, auto_contrast and equalize have
    no magnitude. The strength scales linearly with `magnitude / 10` and the
    sign of signed operations is random. Pixel operations follow PIL's
    `ImageOps`/`ImageEnhance` definitions (what FixMatch used).

    Args:
        pad_fraction: reflect padding of the weak view, as a fraction of the
            height/width, in [0, 0.5] (FixMatch: 4 px on 32 px, i.e. 0.125); 0
            disables the random crop.
        flip: whether the weak view flips horizontally at random. Set False
            when a flip changes the target (e.g. the sign of an angle).
        num_ops: RandAugment operations per image in the strong view.
        magnitude: RandAugment magnitude on the 0-10 scale.
        random_magnitude: if True, each operation of each image uses a
            magnitude drawn uniformly from `[0, magnitude]` (FixMatch's
            RandAugment variant); otherwise exactly `magnitude`.
        ops: operations the strong view draws from: a name of `OP_SETS`
            (`"all"`; `"photometric"`: no geometric operation;
            `"orientation_preserving"`: photometric plus translations, for
            targets that a rotation, shear or flip would change) or a tuple of
            names from `OPS`.
        fill_value: pixel value of the area that geometric operations uncover
            (FixMatch: 128; use 0 on black backgrounds such as MNIST).

    Inputs are batches `(b, height, width, channels)` of uint8 or float pixels
    in [0, 255] with static height and width; both views are float32 in
    [0, 255]. `seed` is a stateless seed of shape `(2,)` (the streams pass one
    per batch).

    Example:

    >>> views = ImageViews(num_ops=3, magnitude=4)
    >>> images = tf.zeros((8, 32, 32, 3), "uint8")
    >>> weak, strong = views(images, seed=tf.constant([1, 2]))
    >>> weak.shape, strong.dtype
    (TensorShape([8, 32, 32, 3]), tf.float32)

    References:
        - Cubuk et al., "RandAugment: Practical automated data augmentation
          with a reduced search space", CVPRW 2020.
        - Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with
          Consistency and Confidence", NeurIPS 2020.
    """

    def __init__(
        self,
        pad_fraction=0.125,
        flip=True,
        num_ops=3,
        magnitude=4.0,
        random_magnitude=False,
        ops="all",
        fill_value=128.0,
    ):
        if not 0.0 <= pad_fraction <= 0.5:
            raise ValueError(f"pad_fraction must be in [0, 0.5], got {pad_fraction}.")
        if num_ops < 0:
            raise ValueError(f"num_ops must be >= 0, got {num_ops}.")
        if not 0.0 <= magnitude <= 10.0:
            raise ValueError(f"magnitude must be in [0, 10], got {magnitude}.")
        self.pad_fraction = float(pad_fraction)
        self.flip = bool(flip)
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.random_magnitude = bool(random_magnitude)
        self.ops = _resolve_ops(ops)
        self.fill_value = float(fill_value)
        self._op_ids = tf.constant([OPS.index(op) for op in self.ops], tf.int32)

    def get_config(self):
        return {
            "pad_fraction": self.pad_fraction,
            "flip": self.flip,
            "num_ops": self.num_ops,
            "magnitude": self.magnitude,
            "random_magnitude": self.random_magnitude,
            "ops": list(self.ops),
            "fill_value": self.fill_value,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, x, seed):
        """Returns `(weak, strong)` float32 views of the batch `x`."""
        weak_seed, strong_seed = _split(seed, 2)
        return self.weak(x, weak_seed), self.strong(x, strong_seed)

    def weak(self, x, seed):
        """Reflect-pad + random crop (+ random horizontal flip) of each image."""
        x = tf.cast(x, tf.float32)
        height, width = _static_size(x)
        pad_h = round(self.pad_fraction * height)
        pad_w = round(self.pad_fraction * width)
        crop_y, crop_x, flip_seed = _split(seed, 3)
        batch = tf.shape(x)[0]
        rows = _offsets(batch, 2 * pad_h, crop_y)[:, None] + tf.range(height)
        cols = _offsets(batch, 2 * pad_w, crop_x)[:, None] + tf.range(width)
        if self.flip:
            flipped = tf.random.stateless_uniform([batch], flip_seed) < 0.5
            cols = tf.where(flipped[:, None], tf.reverse(cols, axis=[1]), cols)
        padded = tf.pad(
            x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT"
        )
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, cols, axis=2, batch_dims=1)

    def strong(self, x, seed):
        """A weak view followed by per-image RandAugment."""
        crop_seed, ops_seed = _split(seed, 2)
        x = self.weak(x, crop_seed)
        op_ids, levels = self.sample_ops(tf.shape(x)[0], ops_seed)
        for slot in range(self.num_ops):
            x = self._apply_ops(x, op_ids[:, slot], levels[:, slot])
        return x

    def sample_ops(self, batch_size, seed):
        """The operations `strong` applies for `seed`, drawn per image.

        Returns:
            `(op_ids, levels)`, both `(batch_size, num_ops)`: int32 indices
            into `OPS`, and signed strengths in [-1, 1] (`magnitude / 10`, or
            uniform in `[0, magnitude / 10]` with `random_magnitude`, with a
            random sign).
        """
        choice_seed, level_seed, sign_seed = _split(seed, 3)
        shape = [batch_size, self.num_ops]
        choice = tf.random.stateless_uniform(
            shape, choice_seed, 0, len(self.ops), dtype=tf.int32
        )
        level = tf.fill(shape, self.magnitude / 10.0)
        if self.random_magnitude:
            level *= tf.random.stateless_uniform(shape, level_seed)
        sign = tf.where(tf.random.stateless_uniform(shape, sign_seed) < 0.5, -1.0, 1.0)
        return tf.gather(self._op_ids, choice), level * sign

    def _apply_ops(self, x, op_ids, levels):
        """Applies operation `op_ids[i]` at strength `levels[i]` to image i.

        The batch is partitioned by operation, each operation runs once on
        the images that drew it, and the results are stitched back in order.
        """
        rows = tf.dynamic_partition(tf.range(tf.shape(x)[0]), op_ids, len(OPS))
        images = tf.dynamic_partition(x, op_ids, len(OPS))
        strengths = tf.dynamic_partition(levels, op_ids, len(OPS))
        outputs = [
            _OP_FUNCTIONS[op](images[i], strengths[i], self.fill_value)
            if op in self.ops
            else images[i]
            for i, op in enumerate(OPS)
        ]
        return tf.reshape(tf.dynamic_stitch(rows, outputs), tf.shape(x))


def _resolve_ops(ops):
    if isinstance(ops, str):
        if ops not in OP_SETS:
            raise ValueError(
                f"Unknown RandAugment op set {ops!r}: use one of "
                f"{', '.join(OP_SETS)} or a tuple of names from {OPS}."
            )
        return OP_SETS[ops]
    ops = tuple(ops)
    unknown = [op for op in ops if op not in OPS]
    if unknown or not ops:
        raise ValueError(
            f"ops must be a non-empty tuple of names from {OPS}; unknown: {unknown}."
        )
    return ops


def _split(seed, num):
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=num))


def _static_size(x):
    if x.shape.rank != 4 or x.shape[1] is None or x.shape[2] is None:
        raise ValueError(
            "ImageViews needs batches of shape (batch, height, width, channels) "
            f"with a static height and width, got {x.shape}. Resize the images "
            "to one size before batching."
        )
    return int(x.shape[1]), int(x.shape[2])


def _offsets(batch, span, seed):
    """Per-image crop offsets, uniform in [0, span]."""
    return tf.random.stateless_uniform([batch], seed, 0, span + 1, dtype=tf.int32)


# ---- operations on float32 images in [0, 255] -----------------------------
# Each takes `(x, level, fill_value)`: `level` is the signed strength of each
# image, shape (b,), in [-1, 1].


def _geometric(matrix_of):
    """An operation from `matrix_of(level, height, width) -> 6 (b,) rows`."""

    def apply(x, level, fill_value):
        height, width = _static_size(x)
        zero = tf.zeros_like(level)
        rows = matrix_of(level, height, width) + [zero, zero]
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=tf.stack(rows, axis=1),  # output -> input pixel coords
            output_shape=[height, width],
            fill_value=fill_value,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )

    return apply


def _rotate_matrix(level, height, width):
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    angle = level * (_MAX_ROTATE_DEGREES * math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    return [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]


def _shear_x_matrix(level, height, width):
    one, zero, shear = tf.ones_like(level), tf.zeros_like(level), level * _MAX_SHEAR
    return [one, shear, -shear * (height - 1) / 2.0, zero, one, zero]


def _shear_y_matrix(level, height, width):
    one, zero, shear = tf.ones_like(level), tf.zeros_like(level), level * _MAX_SHEAR
    return [one, zero, zero, shear, one, -shear * (width - 1) / 2.0]


def _translate_x_matrix(level, height, width):
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    return [one, zero, level * _MAX_TRANSLATE * width, zero, one, zero]


def _translate_y_matrix(level, height, width):
    one, zero = tf.ones_like(level), tf.zeros_like(level)
    return [one, zero, zero, zero, one, level * _MAX_TRANSLATE * height]


def _pixel(function):
    """An operation from `function(x, level)` with level shaped (b, 1, 1, 1)."""
    return lambda x, level, fill_value: function(x, level[:, None, None, None])


def _blend(degenerate, x, factor):
    """PIL ImageEnhance: `degenerate + factor * (x - degenerate)`, clipped."""
    return tf.clip_by_value(degenerate + factor * (x - degenerate), 0.0, 255.0)


def _factor(level):
    """Enhancement factor 1 + 0.9 * level of a signed level in [-1, 1]."""
    return 1.0 + _MAX_ENHANCE * level


def _grayscale(x):
    """PIL's `convert("L")`: rounded luma of RGB images (1 channel: as is)."""
    if x.shape[-1] == 1:
        return x
    weights = tf.constant(_GRAY_WEIGHTS, x.dtype)
    return tf.round(tf.reduce_sum(x * weights, axis=-1, keepdims=True))


def _auto_contrast(x, level):
    low = tf.reduce_min(x, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    scale = 255.0 / tf.maximum(high - low, 1e-6)
    return tf.where(high > low, tf.clip_by_value((x - low) * scale, 0.0, 255.0), x)


def _equalize(x, level):
    """PIL `ImageOps.equalize`, per image and channel."""
    values = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.int32)
    batch, channels = tf.shape(x)[0], tf.shape(x)[3]
    channels_first = tf.transpose(values, [0, 3, 1, 2])
    per_channel = tf.reshape(channels_first, [batch, channels, -1])
    bins = tf.range(batch * channels)[:, None] * 256 + tf.reshape(
        per_channel, [batch * channels, -1]
    )
    hist = tf.math.bincount(tf.reshape(bins, [-1]), minlength=batch * channels * 256)
    hist = tf.reshape(hist[: batch * channels * 256], [batch, channels, 256])
    last_bin = tf.reduce_max(tf.where(hist > 0, tf.range(256), -1), axis=-1)
    last_count = tf.gather(hist, last_bin, batch_dims=2)
    step = (tf.reduce_sum(hist, axis=-1) - last_count) // 255
    safe_step = tf.maximum(step, 1)[..., None]
    lut = (tf.cumsum(hist, axis=-1, exclusive=True) + safe_step // 2) // safe_step
    lut = tf.where(step[..., None] > 0, tf.minimum(lut, 255), tf.range(256))
    mapped = tf.gather(lut, per_channel, batch_dims=2)
    mapped = tf.reshape(mapped, tf.shape(channels_first))
    return tf.cast(tf.transpose(mapped, [0, 2, 3, 1]), x.dtype)


def _solarize(x, level):
    threshold = 256.0 * (1.0 - tf.abs(level))
    return tf.where(x >= threshold, 255.0 - x, x)


def _posterize(x, level):
    drop = tf.round(_MAX_POSTERIZE_DROP * tf.abs(level))
    scale = tf.pow(2.0, drop)
    return tf.floor(tf.round(x) / scale) * scale


def _color(x, level):
    return _blend(_grayscale(x), x, _factor(level))


def _contrast(x, level):
    mean = tf.reduce_mean(_grayscale(x), axis=[1, 2, 3], keepdims=True)
    return _blend(tf.floor(mean + 0.5), x, _factor(level))


def _brightness(x, level):
    return _blend(tf.zeros_like(x), x, _factor(level))


def _sharpness(x, level):
    """PIL `ImageEnhance.Sharpness`: blend with a 3x3 smoothed image."""
    channels = x.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    # "SAME", not "VALID" + pad: on an empty batch (no image drew the op)
    # oneDNN's VALID convolution returned a wrong spatial shape.
    smooth = tf.round(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME"))
    height, width = _static_size(x)
    interior = tf.pad(tf.ones([height - 2, width - 2]), [[1, 1], [1, 1]])
    degenerate = tf.where(interior[None, :, :, None] > 0, smooth, x)  # PIL keeps edges
    return _blend(degenerate, x, _factor(level))


_OP_FUNCTIONS = {
    "identity": lambda x, level, fill_value: x,
    "auto_contrast": _pixel(_auto_contrast),
    "equalize": _pixel(_equalize),
    "rotate": _geometric(_rotate_matrix),
    "solarize": _pixel(_solarize),
    "color": _pixel(_color),
    "posterize": _pixel(_posterize),
    "contrast": _pixel(_contrast),
    "brightness": _pixel(_brightness),
    "sharpness": _pixel(_sharpness),
    "shear_x": _geometric(_shear_x_matrix),
    "shear_y": _geometric(_shear_y_matrix),
    "translate_x": _geometric(_translate_x_matrix),
    "translate_y": _geometric(_translate_y_matrix),
}
