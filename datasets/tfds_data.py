"""Any TFDS data set already prepared on disk: `--dataset tfds:NAME --target FEATURE`.

Nothing is downloaded: the prepared folder `<data_dir>/<name>[/<config>]/
<version>/` is read with `tfds.builder_from_directory` (no builder code and no
network needed). A data set with an image feature gives image rows (the
image, resized to `image_size` when asked); otherwise its scalar features form
a table that goes through `datasets.table.from_frame` (numeric columns,
categorical strings one-hot, missing values imputed, the encoder exported with
the model). A NaN target marks an unlabeled-only row. The TFDS splits become
the fixed split (`train`, `validation` / `val` / `dev`, `test`); a data set
with only one split read is split by the trainer.
"""

import os
import pathlib

import numpy as np
import pandas as pd

from datasets import table, table_files
from datasets.data_files import DataNotFoundError
from datasets.image_files import image_size_pair, resized_uint8
from keras_ssr.data.regression_data import RegressionData

SPLIT_COLUMN = "__tfds_split__"


def load(
    name,
    target,
    data_dir=None,
    features=None,
    image_size=None,
    splits=None,
    categorical=None,
    max_categories=50,
):
    """Loads a prepared TFDS data set as a `RegressionData`.

    Args:
        name: `name`, `name/config` and optionally `:version`
            (e.g. `"my_houses/default:1.0.0"`); default: the highest version
            prepared.
        target: the numeric scalar feature to predict.
        data_dir: the TFDS data dir (default `$TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).
        features: tabular: feature names as in `datasets.table.load`
            (nested features are named `outer/inner`); image data sets: the
            image feature to use when there are several.
        image_size: int or `(height, width)` to resize images to; default:
            the feature's fixed size (required when images vary in size).
        splits: TFDS splits to read (a sequence or `"train,test"`); default
            all.
        categorical: tabular: columns to one-hot even if numeric.
        max_categories: tabular: one-hot columns per categorical column.

    Returns:
        A `RegressionData` named `name` (modality `"image"` or `"tabular"`).

    Raises:
        DataNotFoundError: when the data set is not prepared in `data_dir`
            (naming the folder searched; nothing is downloaded).
        ValueError: an unknown target or feature (listing the features), a
            non-numeric target, split names that are not train / validation
            / test, images of varying size without `image_size`.

    Example:

    >>> data = load("my_houses", "price", data_dir="/data/tfds")  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(prepared_dir(name, data_dir)))
    info = builder.info
    specs = _flat_features(info.features)
    _check_target(name, target, specs)
    split_names = table_files.column_list(splits) or tuple(info.splits.keys())
    _check_splits(name, split_names, tuple(info.splits.keys()))
    images = [k for k, f in specs.items() if isinstance(f, tfds.features.Image)]
    if images:
        image = _image_feature(name, images, features)
        size = _image_size(name, image, specs[image].shape, image_size)
        return _image_data(builder, name, target, image, size, split_names)
    frame = pd.concat(
        [_split_frame(builder, s, specs) for s in split_names], ignore_index=True
    )
    return table.from_frame(
        frame,
        target,
        features=features,
        split_column=SPLIT_COLUMN if len(split_names) > 1 else None,
        categorical=categorical,
        max_categories=max_categories,
        name=name,
        source=f"TFDS {name}",
    )


def prepared_dir(name, data_dir=None):
    """The folder `<data_dir>/<name>/<version>` of a prepared data set.

    Raises:
        DataNotFoundError: naming the data dir and what is missing.
    """
    root = pathlib.Path(
        data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    ).expanduser()
    base, _, version = name.partition(":")
    folder = root / base
    prepared = sorted(
        (p.parent for p in folder.glob("*/dataset_info.json")),
        key=lambda p: tuple(int(v) for v in p.name.split(".") if v.isdigit()),
    )
    if version:
        prepared = [p for p in prepared if p.name == version]
    if not prepared:
        found = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        raise DataNotFoundError(
            f"TFDS {name}: no prepared data set in {folder} (looked for "
            f"{folder}/{version or '<version>'}/dataset_info.json; {root} holds: "
            f"{', '.join(found) or 'nothing'}). keras-ssr never downloads: prepare "
            "it once with tensorflow_datasets (builder.download_and_prepare(), on a "
            "machine with internet or from manual files) and pass its data dir with "
            "data_dir= (CLI --data-dir) or $TFDS_DATA_DIR."
        )
    return prepared[-1]


def _flat_features(features, prefix=""):
    """`{"outer/inner": feature}` over nested `FeaturesDict`s."""
    import tensorflow_datasets as tfds

    out = {}
    for key, feature in features.items():
        if isinstance(feature, tfds.features.FeaturesDict):
            out.update(_flat_features(feature, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = feature
    return out


def _check_target(name, target, specs):
    import tensorflow_datasets as tfds

    listing = ", ".join(
        f"{k} ({type(f).__name__} {f.shape} {np.dtype(f.np_dtype).name})"
        for k, f in specs.items()
    )
    if target not in specs:
        raise ValueError(
            f"TFDS {name}: no feature named {target!r}. Features: {listing}."
        )
    feature = specs[target]
    numeric = np.issubdtype(np.dtype(feature.np_dtype), np.number)
    if feature.shape != () or not numeric or isinstance(feature, tfds.features.Text):
        raise ValueError(
            f"TFDS {name}: the target {target!r} must be a numeric scalar feature. "
            f"Features: {listing}."
        )


def _check_splits(name, wanted, available):
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ValueError(
            f"TFDS {name}: no split(s) {unknown}; it has {list(available)}."
        )
    if len(wanted) > 1:
        odd = [s for s in wanted if s.lower() not in table_files.SPLIT_VALUES]
        if odd:
            raise ValueError(
                f"TFDS {name}: split(s) {odd} are not train / validation / test; "
                f"choose the splits to read with splits=, e.g. splits='{wanted[0]}' "
                "(one split: the trainer draws validation and test from it)."
            )


def _split_frame(builder, split, specs):
    """One split's scalar features as a DataFrame (strings decoded)."""
    import tensorflow_datasets as tfds

    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    columns = {}
    for key, values in _flat_arrays(arrays).items():
        if key in specs and np.ndim(values) == 1:
            if values.dtype.kind in "SO":
                values = np.array([v.decode("utf-8") for v in values], dtype=object)
            columns[key] = values
    frame = pd.DataFrame(columns)
    frame[SPLIT_COLUMN] = split
    return frame


def _flat_arrays(arrays, prefix=""):
    out = {}
    for key, value in arrays.items():
        if isinstance(value, dict):
            out.update(_flat_arrays(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _image_data(builder, name, target, image, size, split_names):
    pixels, targets, parts = [], [], []
    for split in split_names:
        dataset = builder.as_dataset(split=split).map(
            lambda example: (_image(_get(example, image), size), _get(example, target))
        )
        for x, y in dataset.batch(256).as_numpy_iterator():
            pixels.append(x)
            targets.append(y.astype("float32"))
            parts += [split] * len(y)
    y = np.concatenate(targets)
    table_files.check_target_counts(f"TFDS {name}", target, ~np.isnan(y))
    split_rows = None
    if len(split_names) > 1:
        frame = pd.DataFrame({SPLIT_COLUMN: parts})
        split_rows = table_files.split_rows(
            f"TFDS {name}", frame, SPLIT_COLUMN, ~np.isnan(y)
        )
    return RegressionData(
        x=np.concatenate(pixels),
        y=y,
        feature_names=(image,),
        name=name,
        target_name=target,
        modality="image",
        split_rows=split_rows,
        has_target=~np.isnan(y),
    )


def _image_feature(name, images, features):
    chosen = table_files.column_list(features)
    if chosen:
        if len(chosen) != 1 or chosen[0] not in images:
            raise ValueError(
                f"TFDS {name}: features= must name one image feature of {images}."
            )
        return chosen[0]
    if len(images) > 1:
        raise ValueError(
            f"TFDS {name}: several image features {images}: choose one with "
            "features= (CLI --features)."
        )
    return images[0]


def _image_size(name, image, shape, image_size):
    if image_size is not None:
        return image_size_pair(image_size)
    if len(shape) == 3 and shape[0] and shape[1]:
        return None  # every image has the feature's fixed size
    raise ValueError(
        f"TFDS {name}: the images of {image!r} have no fixed size {shape}: pass "
        "image_size= (CLI --image-size)."
    )


def _get(example, key):
    for part in key.split("/"):
        example = example[part]
    return example


def _image(pixels, size):
    return pixels if size is None else resized_uint8(pixels, size)
