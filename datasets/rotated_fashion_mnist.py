"""Rotated Fashion-MNIST: regress the angle by which a clothing image was rotated.

An offline image regression benchmark with tens of thousands of unlabeled
images: the 70,000 Fashion-MNIST images (28x28 grayscale, 10 classes of
clothes, shoes and bags; Xiao, Rasul and Vollgraf 2017) as Debian's
`dataset-fashion-mnist` package installs them: four gzip IDX files in
`/usr/share/datasets/fashion-mnist/`. Each image is rotated about its centre
by an angle drawn uniformly from `[-max_angle, max_angle]` degrees (bilinear
interpolation, black fill, the same `rotate` as `rotated_mnist`); the target
is that angle in degrees (counter-clockwise positive). The items are
photographed upright and centred, so the angle is well defined; parts of an
item that reach the frame (trousers, dresses) are cut by the rotation.

Split (fixed, independent of the angle seed): the 60,000 images of the
training file are split by a seed-0 permutation into 55,000 train and 5,000
validation rows; the 10,000 images of the test file are the test rows. At 5 %
labels that is 2,750 labeled and 52,250 unlabeled training images.

Groups are the 10 classes (`CLASS_NAMES`), for per-class metrics and per-class
diagnostics (e.g. which items' angles the model finds ambiguous).

Augmentation must preserve the label: use `ImageViews(**VIEWS_CONFIG)`
(crop/translate and pixel operations only; no rotation, shear or flip).

Licence: Fashion-MNIST is (c) 2017 Zalando SE, MIT licence. keras-ssr does not
redistribute the images: it reads them from the installed package.

References:
    - Xiao, Rasul and Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
      Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
"""

import gzip
import pathlib
import zlib

import numpy as np

from datasets.data_files import DataNotFoundError
from datasets.rotated_mnist import check_max_angle, rotated_data

DEFAULT_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
INSTALL_COMMAND = "apt-get install --no-install-recommends dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SIZE = 28
VALIDATION_SIZE = 5000
SPLIT_SEED = 0
# Label-preserving `ImageViews` arguments: no rotation, shear or flip (they
# change the angle), black fill like the images' background.
VIEWS_CONFIG = {"flip": False, "ops": "orientation_preserving", "fill_value": 0.0}
# IDX magic numbers: 0x00 0x00, type 0x08 (unsigned byte), number of dims.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801


def load(max_angle=45.0, seed=0, data_dir=None, validation_size=VALIDATION_SIZE):
    """Loads rotated Fashion-MNIST: 70,000 images (28x28x1 uint8), target = angle.

    Args:
        max_angle: angles are uniform in `[-max_angle, max_angle]` degrees.
        seed: seed of the angles (`np.random.default_rng(seed)`).
        data_dir: folder holding the four gzip IDX files (`FILES`); default
            `/usr/share/datasets/fashion-mnist` (Debian's package).
        validation_size: images of the training file held out for
            validation (the fixed split).

    Returns:
        A `RegressionData` named `"rotated_fashion_mnist"`, modality
        `"image"`, `x` uint8 `(n, 28, 28, 1)` (training file first, then the
        test file), `y` the angles in degrees, `groups` the classes 0-9 and
        a fixed `split_rows`.

    Raises:
        DataNotFoundError: if the folder or a file is missing (the message
            gives the apt command).
        ValueError: if a file is truncated or not in the IDX format.

    Example:

    >>> data = load(max_angle=30.0)
    >>> data.x.shape, {k: len(v) for k, v in data.split_rows.items()}
    ((70000, 28, 28, 1), {'train': 55000, 'validation': 5000, 'test': 10000})
    """
    check_max_angle(max_angle)
    train_images, train_classes = read_part("train", data_dir)
    test_images, test_classes = read_part("test", data_dir)
    return rotated_data(
        "rotated_fashion_mnist",
        np.concatenate([train_images, test_images]),
        np.concatenate([train_classes, test_classes]),
        CLASS_NAMES,
        fixed_split(len(train_images), len(test_images), validation_size),
        max_angle,
        seed,
    )


def read_part(part, data_dir=None):
    """The images `(n, 28, 28, 1)` uint8 and classes `(n,)` of `"train"`/`"test"`."""
    folder = pathlib.Path(data_dir) if data_dir is not None else DEFAULT_DIR
    image_file, label_file = (folder / name for name in FILES[part])
    _require(folder, (image_file, label_file))
    images = read_idx(image_file, _IMAGES_MAGIC)
    classes = read_idx(label_file, _LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"rotated_fashion_mnist: {image_file} holds images of shape "
            f"{images.shape[1:]}, expected ({IMAGE_SIZE}, {IMAGE_SIZE})."
        )
    if len(images) != len(classes):
        raise ValueError(
            f"rotated_fashion_mnist: {image_file} has {len(images)} images but "
            f"{label_file} has {len(classes)} labels; reinstall the files "
            f"(`{INSTALL_COMMAND}`)."
        )
    if classes.size and classes.max() >= len(CLASS_NAMES):
        raise ValueError(
            f"rotated_fashion_mnist: {label_file} has class {classes.max()}; "
            f"expected 0-{len(CLASS_NAMES) - 1}."
        )
    return images[..., None], classes.astype("int32")


def read_idx(path, magic):
    """Reads a gzip IDX file of unsigned bytes (LeCun's MNIST format).

    The format: a 4-byte big-endian magic number `0x000008NN` (type 0x08 =
    unsigned byte, NN = number of dimensions), NN big-endian uint32 sizes, then
    the values in C order.

    Args:
        path: the `.gz` file.
        magic: the expected magic number (0x803 images, 0x801 labels).

    Returns:
        A uint8 array of the sizes the header gives.

    Raises:
        ValueError: naming the file, if it is not gzip, is truncated, or its
            header or size does not match.
    """
    try:
        with gzip.open(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"rotated_fashion_mnist: cannot decompress {path} ({error}): the file "
            f"is truncated or not gzip; reinstall it (`{INSTALL_COMMAND}`)."
        ) from error
    header = np.frombuffer(content[:4], ">u4")
    if header.size != 1 or int(header[0]) != magic:
        found = f"0x{int(header[0]):08x}" if header.size else "nothing"
        raise ValueError(
            f"rotated_fashion_mnist: {path} is not an IDX file of unsigned "
            f"bytes with {magic & 0xFF} dimension(s): magic number {found}, "
            f"expected 0x{magic:08x}."
        )
    ndim = magic & 0xFF
    shape = tuple(int(d) for d in np.frombuffer(content[4 : 4 + 4 * ndim], ">u4"))
    body = content[4 + 4 * ndim :]
    expected = int(np.prod(shape)) if len(shape) == ndim else -1
    if len(body) != expected:
        raise ValueError(
            f"rotated_fashion_mnist: {path} is truncated or padded: its header "
            f"gives shape {shape} ({expected} bytes) but {len(body)} bytes "
            f"follow; reinstall it (`{INSTALL_COMMAND}`)."
        )
    return np.frombuffer(body, np.uint8).reshape(shape)


def fixed_split(num_train_file, num_test_file, validation_size=VALIDATION_SIZE):
    """Train/validation rows from the training file (seed-0 permutation); the
    test file's rows (stored after the training file's) are the test rows."""
    if not 0 < validation_size < num_train_file:
        raise ValueError(
            f"rotated_fashion_mnist: validation_size={validation_size} must be "
            f"in [1, {num_train_file - 1}] for a training file of "
            f"{num_train_file} images."
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(num_train_file)
    return {
        "train": np.sort(order[validation_size:]),
        "validation": np.sort(order[:validation_size]),
        "test": np.arange(num_train_file, num_train_file + num_test_file),
    }


def _require(folder, files):
    missing = [f for f in files if not f.is_file()]
    if missing:
        shown = "\n".join(f"  - {f}" for f in missing)
        raise DataNotFoundError(
            f"rotated_fashion_mnist: Fashion-MNIST not found in {folder}. "
            f"Missing:\n{shown}\nInstall Debian's package (as root): "
            f"`{INSTALL_COMMAND}` (it puts the four gzip IDX files in "
            f"{DEFAULT_DIR}), or pass data_dir= (CLI: --data-dir) to a folder "
            f"holding {', '.join(sum(FILES.values(), ()))}."
        )
