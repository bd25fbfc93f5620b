"""What depends on the input kind of a dataset: backbone, views, serving spec.

A `RegressionData` is tabular, image or text (`data.modality`); the trainer
asks this module for the regressor, the (weak, strong) views, the labeled-batch
augmentation and the SavedModel input signature, so that `experiment.py` and
`run.py` stay the same for every kind of data.
"""

import inspect

import numpy as np
import tensorflow as tf

from datasets.registry import DATASETS, load_dataset
from keras_ssr.data.tabular_views import TabularViews
from keras_ssr.models.mlp_backbone import MLPBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor

BACKBONES = {
    "tabular": ("mlp",),
    "image": ("small_cnn", "resnet50"),
    "text": ("bilstm",),
}
# Flags that select how a dataset is read, passed to loaders that take them.
_LOADER_FLAGS = ("data_dir", "protocol", "image_size", "on_corrupt")


def load_data(config):
    """Loads `config.dataset` with the dataset-reading flags the user set.

    Raises:
        ValueError: for an unknown dataset, or a flag (e.g. `--protocol`) that
            the dataset does not take.
    """
    if config.dataset not in DATASETS:
        return load_dataset(config.dataset)  # raises with the valid names
    kwargs = {
        name: getattr(config, name)
        for name in _LOADER_FLAGS
        if getattr(config, name, None) is not None
    }
    accepted = inspect.signature(DATASETS[config.dataset]).parameters
    unknown = ["--" + k.replace("_", "-") for k in kwargs if k not in accepted]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)} does not apply to dataset {config.dataset}: "
            "drop the flag (it is for datasets read from disk)."
        )
    return load_dataset(config.dataset, **kwargs)


def backbone_name(data, config):
    """The backbone `config` asks for, checked against the data's modality."""
    name = config.backbone
    valid = BACKBONES[data.modality]
    if name == "auto":
        return valid[0]
    if name not in valid:
        raise ValueError(
            f"--backbone {name} does not take {data.modality} inputs "
            f"({data.name}); use one of: {', '.join(valid)}."
        )
    return name


def build_regressor(data, split, config, scaler):
    """A fresh `SSRRegressor` for `data`: backbone + head + scaling."""
    name = backbone_name(data, config)
    scaling = {}
    if data.modality == "tabular":
        x_train = data.x[split.train]
        scaling = {
            "input_mean": x_train.mean(axis=0),
            "input_std": x_train.std(axis=0),
            "input_clip": config.input_clip,
        }
    return SSRRegressor(
        _backbone(name, data, split, config),
        target_mean=scaler.mean,
        target_std=scaler.std,
        name="regressor",
        **scaling,
    )


def _backbone(name, data, split, config):
    if name == "mlp":
        return MLPBackbone(config.hidden_units, dropout=config.dropout, name="backbone")
    if name == "small_cnn":
        from keras_ssr.models.small_cnn_backbone import SmallCNNBackbone

        return SmallCNNBackbone(dropout=config.dropout, name="backbone")
    if name == "resnet50":
        from keras_ssr.models.resnet50_backbone import ResNet50Backbone

        return ResNet50Backbone(weights_path=config.resnet_weights, name="backbone")
    from keras_ssr.models.bilstm_backbone import BiLSTMBackbone

    return BiLSTMBackbone.from_texts(
        _texts(data.x[split.train]),
        glove=config.glove,
        dropout=config.dropout,
        name="backbone",
    )


def make_views(data, split, config, unaugmented=False, vocabulary=None):
    """`(views, labeled_augment)` for the training stream.

    `views(x, seed) -> (weak, strong)` makes the unlabeled views;
    `labeled_augment` is the weak view applied to labeled images (FixMatch), or
    `None`. With `unaugmented` (prediction-powered methods, whose unbiasedness
    needs the teacher's predictions on the very rows the student sees) the weak
    view is the raw input. Text views take synonyms for the words of
    `vocabulary` (pass the backbone's, e.g. `BiLSTMBackbone.vocabulary`, so it
    is not built twice); by default the training texts' vocabulary is built.
    """
    if data.modality == "image":
        return _image_views(data, config, unaugmented)
    if data.modality == "text":
        return _text_views(data, split, config, vocabulary), None
    views = TabularViews.fit(
        data.x[split.train],
        weak_noise=0.0 if unaugmented else config.weak_noise,
        strong_noise=config.strong_noise,
        strong_dropout=config.strong_dropout,
    )
    return views, None


def _image_views(data, config, unaugmented):
    from keras_ssr.data.image_views import ImageViews

    # A dataset whose target geometric ops would change (an angle) says which
    # views keep it in its module's VIEWS_CONFIG, e.g. rotated_mnist.
    kwargs = dict(dataset_views_config(data.name))
    if config.augment_ops != "auto":
        kwargs["ops"] = config.augment_ops
    views = ImageViews(
        num_ops=config.randaugment_ops,
        magnitude=config.randaugment_magnitude,
        **kwargs,
    )
    if unaugmented:
        return _RawWeak(views), None
    return views, views.weak


def dataset_views_config(name):
    """The `ImageViews` settings a registered dataset asks for (or `{}`)."""
    loader = DATASETS.get(name)
    module = inspect.getmodule(loader) if loader else None
    return getattr(module, "VIEWS_CONFIG", {})


class _RawWeak:
    """Views whose weak view is the input itself (as float32)."""

    def __init__(self, views):
        self.views = views

    def __call__(self, x, seed):
        return tf.cast(x, "float32"), self.views.strong(x, seed)


def _text_views(data, split, config, vocabulary):
    from keras_ssr.data.synonyms import build_synonym_table
    from keras_ssr.data.text_views import TextViews

    if vocabulary is None:
        from keras_ssr.models.bilstm_backbone import build_vocabulary

        # The same vocabulary BiLSTMBackbone.from_texts builds by default.
        vocabulary = build_vocabulary(_texts(data.x[split.train]))
    table = build_synonym_table(
        vocabulary, source=config.synonym_source, path=config.synonym_file
    )
    return TextViews(
        table,
        replace_probability=config.synonym_replace,
        insert_probability=config.synonym_insert,
    )


def _texts(x):
    """Every text of `x` as one flat list (sentence pairs are flattened)."""
    return [str(t) for t in x.reshape(-1)]


def input_spec(data):
    """The SavedModel input signature for raw inputs of `data`."""
    shape = (None,) + data.input_shape
    if data.modality == "text":
        return tf.TensorSpec(shape, tf.string, name="texts")
    if data.modality == "image":
        return tf.TensorSpec(shape, tf.float32, name="images")
    return tf.TensorSpec(shape, tf.float32, name="features")


def add_modality_flags(parser, defaults):
    """The CLI flags of this module: dataset files, backbone, image/text views."""
    group = parser.add_argument_group("datasets on disk, backbones, image/text views")
    add = group.add_argument
    add(
        "--data-dir",
        default=None,
        help="folder of an on-disk dataset (utkface, imdb_wiki_dir, agedb_dir, "
        "stsb); default $KERAS_SSR_DATA_DIR/<dataset> or ~/keras_ssr_data/<dataset>",
    )
    add("--protocol", default=None, help="dataset protocol, e.g. hpl|ucvme_ssl|rankup")
    add("--image-size", type=int, default=None, help="images are resized to this")
    add(
        "--on-corrupt",
        choices=("skip", "raise"),
        default=None,
        help="corrupt image files: report each and skip it, or stop",
    )
    add(
        "--backbone",
        choices=("auto",) + sum(BACKBONES.values(), ()),
        default=defaults.backbone,
        help="auto: mlp (tabular), small_cnn (image), bilstm (text)",
    )
    add("--resnet-weights", default=None, help="local ImageNet ResNet-50 .h5 file")
    add("--glove", default=None, help="glove.*.txt file (default: packaged 6B-50d)")
    add(
        "--augment-ops",
        choices=("auto", "all", "photometric", "orientation_preserving"),
        default=defaults.augment_ops,
        help="RandAugment operations; auto keeps orientation for angle targets",
    )
    add("--randaugment-ops", type=int, default=defaults.randaugment_ops)
    add("--randaugment-magnitude", type=float, default=defaults.randaugment_magnitude)
    add(
        "--synonym-source",
        choices=("auto", "wordnet", "mythes", "moby", "file"),
        default=defaults.synonym_source,
        help="synonyms for the strong text view",
    )
    add(
        "--synonym-file",
        default=None,
        help="word<TAB>synonym<TAB>... file (--synonym-source file)",
    )
    add("--synonym-replace", type=float, default=defaults.synonym_replace)
    add("--synonym-insert", type=float, default=defaults.synonym_insert)


def with_validation(split_rows, validation_ratio, seed):
    """`split_rows` with a validation part for model selection.

    Protocols without one (RankUp's UTKFace, GLUE STS-B: train and test only)
    get `validation_ratio` of their train rows, drawn with `seed`, so the test
    rows are never used to pick the best epoch. The protocol's labeling order
    keeps its order, minus the rows moved to validation.
    """
    if len(split_rows["validation"]):
        return split_rows
    train = np.asarray(split_rows["train"])
    count = max(1, int(round(validation_ratio * len(train))))
    if count >= len(train):
        raise ValueError(
            f"the protocol has no validation rows and {len(train)} train rows: "
            "too few to hold out a validation part."
        )
    validation = np.random.default_rng(seed + 2).permutation(train)[:count]
    rows = dict(split_rows, validation=np.sort(validation))
    rows["train"] = np.setdiff1d(train, validation)
    order = split_rows.get("labeled_order")
    if order is not None:
        rows["labeled_order"] = np.asarray(order)[~np.isin(order, validation)]
    return rows
