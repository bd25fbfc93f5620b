"""ImageViews: weak crop/flip and per-image RandAugment, checked against numpy/PIL."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from keras_ssr.data.image_views import GEOMETRIC_OPS, OPS, ImageViews
from keras_ssr.data.streams import make_train_stream

SEED = tf.constant([7, 11], tf.int64)


def random_images(n=6, h=12, w=14, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c)).astype("uint8")


def candidate_crops(image, pad_h, pad_w, flips=(False, True)):
    """Every crop (and mirrored crop) of the numpy-reflect-padded image."""
    h, w = image.shape[:2]
    padded = np.pad(image, [(pad_h, pad_h), (pad_w, pad_w), (0, 0)], mode="reflect")
    for dy in range(2 * pad_h + 1):
        for dx in range(2 * pad_w + 1):
            crop = padded[dy : dy + h, dx : dx + w]
            for flip in flips:
                yield (dy, dx, flip), (crop[:, ::-1] if flip else crop)


def matching_crop(image, view, pad_h, pad_w, flips=(False, True)):
    for key, crop in candidate_crops(image, pad_h, pad_w, flips):
        if np.array_equal(crop.astype("float32"), view):
            return key
    return None


def test_weak_view_is_a_reflect_padded_crop_with_random_flip():
    x = random_images(n=32, h=8, w=8)
    weak = ImageViews(pad_fraction=0.25).weak(x, SEED).numpy()
    keys = [matching_crop(x[i], weak[i], 2, 2) for i in range(len(x))]
    assert None not in keys, "a weak view is not a crop of the padded image"
    assert {k[2] for k in keys} == {False, True}
    assert len({k[:2] for k in keys}) > 5  # offsets drawn per image


def test_weak_view_without_flip_or_padding():
    x = random_images(n=16, h=8, w=8)
    weak = ImageViews(pad_fraction=0.25, flip=False).weak(x, SEED).numpy()
    assert all(
        matching_crop(x[i], weak[i], 2, 2, flips=(False,)) is not None
        for i in range(len(x))
    )
    still = ImageViews(pad_fraction=0.0, flip=False).weak(x, SEED)
    np.testing.assert_array_equal(still.numpy(), x.astype("float32"))


def pil_reference(op, image, level):
    """PIL's operation at signed strength `level` (FixMatch's definitions)."""
    pil = Image.fromarray(image)
    factor = 1.0 + 0.9 * level
    references = {
        "equalize": lambda: ImageOps.equalize(pil),
        "auto_contrast": lambda: ImageOps.autocontrast(pil),
        "solarize": lambda: ImageOps.solarize(pil, 256 * (1 - abs(level))),
        "posterize": lambda: ImageOps.posterize(pil, int(8 - round(4 * abs(level)))),
        "color": lambda: ImageEnhance.Color(pil).enhance(factor),
        "contrast": lambda: ImageEnhance.Contrast(pil).enhance(factor),
        "brightness": lambda: ImageEnhance.Brightness(pil).enhance(factor),
        "sharpness": lambda: ImageEnhance.Sharpness(pil).enhance(factor),
    }
    return np.asarray(references[op]()).astype("float32")


PIXEL_OPS = (
    "equalize",
    "auto_contrast",
    "solarize",
    "posterize",
    "color",
    "contrast",
    "brightness",
    "sharpness",
)


def test_pixel_operations_match_pil():
    x = random_images(n=6)
    x[0] = x[0] // 4 + 60  # a low-contrast image
    for op in PIXEL_OPS:
        views = ImageViews(
            pad_fraction=0.0, flip=False, num_ops=1, magnitude=7, ops=(op,)
        )
        assert_matches_pil(op, x, views.strong(x, SEED).numpy())


def assert_matches_pil(op, x, strong):
    for i in range(len(x)):
        # The sign of the strength is random: one of the two must match. PIL
        # rounds to uint8 (and its grayscale to integers): within 1.5 levels.
        error = min(
            np.abs(strong[i] - pil_reference(op, x[i], level)).max()
            for level in (0.7, -0.7)
        )
        assert error <= 1.5, (op, i, error)


def test_translate_shifts_by_whole_pixels_with_fill():
    x = random_images(n=8, h=10, w=10)
    # 0.3 * (10/3 / 10) * 10 px = 1 px at magnitude 10/3.
    views = ImageViews(
        pad_fraction=0.0,
        flip=False,
        num_ops=1,
        magnitude=10 / 3,
        ops=("translate_x",),
        fill_value=7.0,
    )
    strong = views.strong(x, SEED).numpy()
    left = np.concatenate([x[:, :, 1:], np.full_like(x[:, :, :1], 7)], axis=2)
    right = np.concatenate([np.full_like(x[:, :, :1], 7), x[:, :, :-1]], axis=2)
    for i in range(len(x)):
        assert (
            min(np.abs(strong[i] - left[i]).max(), np.abs(strong[i] - right[i]).max())
            < 1e-3
        )


def bar_image(n, size=24, value=120):
    """A horizontal bar through the centre, on black."""
    x = np.zeros((n, size, size, 1), "uint8")
    x[:, size // 2 - 1 : size // 2 + 2, 4:-4] = value
    return x


def orientations(images):
    """Principal-axis |angle| (degrees) of each image's intensity above its minimum.

    Images with no contrast left (e.g. equalize then solarize) are dropped.
    """
    angles = []
    ys, xs = np.mgrid[: images.shape[1], : images.shape[2]]
    for image in images[..., 0]:
        weight = image - image.min()
        total = weight.sum()
        if total == 0:
            continue
        my, mx = (weight * ys).sum() / total, (weight * xs).sum() / total
        mu20 = (weight * (xs - mx) ** 2).sum()
        mu02 = (weight * (ys - my) ** 2).sum()
        mu11 = (weight * (xs - mx) * (ys - my)).sum()
        angles.append(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
    return np.abs(np.array(angles))


def test_rotate_turns_by_the_magnitude():
    views = ImageViews(
        pad_fraction=0.0,
        flip=False,
        num_ops=1,
        magnitude=10,
        ops=("rotate",),
        fill_value=0,
    )
    angles = orientations(views.strong(bar_image(8), SEED).numpy())
    np.testing.assert_allclose(angles, 30.0, atol=2.0)


def test_orientation_preserving_ops_keep_a_bar_horizontal():
    x = bar_image(64)
    kept = ImageViews(flip=False, ops="orientation_preserving", fill_value=0)
    angles = orientations(kept.strong(x, SEED).numpy())
    # Not exactly 0: a translation's fill rows next to an off-centre crop skew
    # the moments slightly (<= 1.5 degrees seen); a 12-degree rotation does not.
    assert len(angles) > 48 and angles.max() < 3.0
    ids, _ = kept.sample_ops(4096, SEED)
    chosen = {OPS[i] for i in np.unique(ids.numpy())}
    assert not chosen & {"rotate", "shear_x", "shear_y"}
    assert {"translate_x", "translate_y", "equalize"} <= chosen
    photometric = ImageViews(ops="photometric").sample_ops(4096, SEED)[0].numpy()
    assert not {OPS[i] for i in np.unique(photometric)} & set(GEOMETRIC_OPS)
    # The same check fails when geometric operations are allowed.
    turned = ImageViews(flip=False, ops="all", fill_value=0).strong(x, SEED)
    assert orientations(turned.numpy()).max() > 8.0


def test_operations_are_drawn_per_image():
    views = ImageViews(pad_fraction=0.0, flip=False, num_ops=2, magnitude=5)
    ids, levels = views.sample_ops(64, SEED)
    assert ids.shape == (64, 2) and levels.shape == (64, 2)
    assert len(np.unique(ids.numpy()[:, 0])) >= 10
    np.testing.assert_allclose(np.abs(levels.numpy()), 0.5)
    # 64 copies of one image come out different: the ops differ per image.
    x = np.repeat(random_images(n=1, seed=3), 64, axis=0)
    strong = views.strong(x, SEED).numpy().reshape(64, -1)
    assert len(np.unique(strong, axis=0)) >= 20


def test_random_magnitude_draws_levels_up_to_the_magnitude():
    views = ImageViews(magnitude=6, random_magnitude=True)
    levels = np.abs(views.sample_ops(2048, SEED)[1].numpy())
    assert levels.max() <= 0.6 and levels.min() < 0.05 and levels.max() > 0.55


def test_views_are_deterministic_per_seed_and_config_round_trips():
    x = random_images(n=8)
    views = ImageViews(num_ops=3, magnitude=4)
    weak, strong = views(x, SEED)
    again = ImageViews.from_config(views.get_config())(x, SEED)
    np.testing.assert_array_equal(weak.numpy(), again[0].numpy())
    np.testing.assert_array_equal(strong.numpy(), again[1].numpy())
    other = views(x, SEED + 1)[1]
    assert not np.array_equal(strong.numpy(), other.numpy())
    assert not np.array_equal(weak.numpy(), strong.numpy())


def test_views_inside_the_train_stream():
    x = random_images(n=40, h=16, w=16)
    views = ImageViews()
    stream = make_train_stream(
        (x[:8], np.zeros(8, "float32")),
        x[8:],
        views,
        labeled_batch_size=4,
        unlabeled_batch_size=16,
        labeled_augment=views.weak,
    )
    batch = next(iter(stream))
    weak, strong = batch["unlabeled"]
    assert weak.shape == strong.shape == (16, 16, 16, 3)
    assert weak.dtype == strong.dtype == batch["labeled"][0].dtype == tf.float32
    for view in (weak, strong):
        assert 0.0 <= view.numpy().min() and view.numpy().max() <= 255.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ops": "geometric"}, "Unknown RandAugment op set"),
        ({"ops": ("rotate", "blur")}, "unknown: \\['blur'\\]"),
        ({"magnitude": 11}, "magnitude"),
        ({"pad_fraction": 0.6}, "pad_fraction"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageViews(**kwargs)


def test_dynamic_image_size_is_rejected():
    views = ImageViews()
    spec = tf.TensorSpec((None, None, None, 3), tf.uint8)
    with pytest.raises(ValueError, match="static height and width"):
        tf.function(views.weak).get_concrete_function(spec, SEED)


def test_every_operation_handles_images_that_did_not_draw_it():
    # One image, two ops: over these seeds each op also gets an empty partition.
    x = random_images(n=1, h=9, w=11)
    for op in OPS[1:]:
        views = ImageViews(num_ops=1, ops=(op, "identity"))
        for seed in range(8):
            strong = views.strong(x, tf.constant([seed, 1], tf.int64))
            assert strong.shape == (1, 9, 11, 3), op
