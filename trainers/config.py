"""`RunConfig`: every setting of a training run, in sections that match the CLI.

The trainer's own sections (data, model, views, training, teacher,
distribution, output) are defined here; the method sections (`ssl`, `hpl`,
`l2i`, ...) come with the methods (`keras_ssr.methods.registry.config_sections`).
Each section validates its values once, when it is built; `trainers.run`
generates its flags from the sections' fields.
"""

import dataclasses
import math

import keras

from datasets.registry import TFDS_PREFIX, dataset_names, get_dataset
from keras_ssr.callbacks.profile_steps import parse_profile_steps
from keras_ssr.config_section import ConfigSection, option, parse_ints
from keras_ssr.methods.registry import config_sections, method_names
from keras_ssr.modalities import all_backbones
from keras_ssr.optimizers.adam_l2 import AdamL2
from trainers.distribution import STRATEGIES


def parse_names(text):
    """`"a,b"` -> `("a", "b")`, blanks dropped."""
    return tuple(m.strip() for m in str(text).split(",") if m.strip())


def parse_seeds(text):
    """`"0"`, `"0,1,2"` or a range `"0-4"` -> a tuple of ints."""
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-"))
            return tuple(range(low, high + 1))
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: use '0', '0,1,2' or '0-4'") from None


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Raises a `ValueError` naming the flag if `value` is outside the range."""
    if value is None:
        return
    flag = "--" + name.replace("_", "-")
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value <= low if low_open else value < low))
    bad = bad or (high is not None and (value >= high if high_open else value > high))
    if bad:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{flag} {value} is outside {left}{lo}, {hi}{right}")


@dataclasses.dataclass
class DataConfig(ConfigSection):
    """Which data set, how it is read, and how it is split."""

    name = "data"
    title = "data: data set, split, label budget"

    dataset: str = option(
        "california_housing",
        f"one of: {', '.join(dataset_names())}, or {TFDS_PREFIX}<name> (a TFDS "
        "data set prepared on disk)",
    )
    label_ratio: float | None = option(
        None,
        "fraction of the training rows with a target that are labeled, in "
        "(0, 1] (or --num-labels); default 0.05 for the benchmark data sets, "
        "every row with a target for your own data (csv, image_folder, "
        "text_csv, tfds:)",
    )
    num_labels: int | None = option(
        None, "number of labeled training rows instead of a ratio"
    )
    validation_ratio: float = option(
        0.1, "fraction of rows held out for validation (model selection)"
    )
    test_ratio: float = option(0.2, "fraction of rows held out for test")
    holdout_fraction: float = option(
        0.0,
        "0: hold-out batches resample the labeled rows; >0: set this fraction "
        "of labeled rows aside as a separate hold-out split (methods with a "
        "hold-out stream: HPL, L2I)",
    )
    benchmark_mode: bool = option(
        False, "give diagnostics (not training) the unlabeled ground truth"
    )
    data_dir: str | None = option(
        None,
        "folder of an on-disk dataset (utkface, imdb_wiki_dir, agedb_dir, stsb); "
        "default $KERAS_SSR_DATA_DIR/<dataset> or ~/keras_ssr_data/<dataset>",
    )
    protocol: str | None = option(None, "dataset protocol, e.g. hpl|ucvme_ssl|rankup")
    image_size: int | None = option(None, "images are resized to this")
    on_corrupt: str | None = option(
        None,
        "corrupt image files: report each and skip it, or stop",
        choices=("skip", "raise"),
    )
    data_file: str | None = option(
        None, "your data: a CSV or Parquet file (csv, text_csv)"
    )
    target: str | None = option(
        None, "your data: the target column (empty cells: unlabeled rows)"
    )
    features: str | None = option(
        None, "csv/tfds: feature columns, comma-separated (default: all numeric)"
    )
    categorical: str | None = option(
        None, "csv/tfds: columns to one-hot encode, comma-separated"
    )
    max_categories: int | None = option(
        None, "csv/tfds: most frequent values one-hot encoded per column (50)"
    )
    group: str | None = option(None, "your data: a column for per-group metrics")
    split_column: str | None = option(
        None, "your data: a column with train/validation/test per row"
    )
    labels: str | None = option(
        None, "image_folder: CSV of file name and target (default: labels.csv)"
    )
    file_column: str | None = option(
        None, "image_folder: the file-name column of --labels"
    )
    text_column: str | None = option(None, "text_csv: the text column")
    text_columns: str | None = option(
        None, "text_csv: two text columns (sentence pairs), comma-separated"
    )

    def __post_init__(self):
        if not self.dataset.startswith(TFDS_PREFIX) and (
            self.dataset not in dataset_names()
        ):
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {', '.join(dataset_names())}"
                f", or {TFDS_PREFIX}<name>"
            )
        if self.label_ratio is not None and self.num_labels is not None:
            raise ValueError("give only one of --label-ratio and --num-labels")
        if self.label_ratio is None and self.num_labels is None:
            self.label_ratio = get_dataset(self.dataset).default_label_ratio
        check_range("label_ratio", self.label_ratio, 0.0, 1.0, low_open=True)
        check_range("num_labels", self.num_labels, 1)
        check_range("validation_ratio", self.validation_ratio, 0.0, 1.0, high_open=True)
        check_range("test_ratio", self.test_ratio, 0.0, 1.0, high_open=True)
        check_range("holdout_fraction", self.holdout_fraction, 0.0, 1.0, high_open=True)
        check_range("image_size", self.image_size, 1)

    def loader_kwargs(self, entry):
        """The loader arguments set by flags, checked against the data set's
        registry `entry`: a flag it does not take is refused, a flag it
        requires must be given."""
        given = {
            k: getattr(self, k) for k in LOADER_FLAGS if getattr(self, k) is not None
        }
        unknown = [_flag(k) for k in given if k not in entry.flags]
        if unknown:
            takes = ", ".join(map(_flag, entry.flags)) or "none"
            raise ValueError(
                f"{', '.join(unknown)} does not apply to dataset {self.dataset}: "
                f"drop the flag (it takes: {takes})."
            )
        missing = [_flag(k) for k in entry.required if k not in given]
        if missing:
            raise ValueError(f"--dataset {self.dataset} needs {', '.join(missing)}.")
        return given


# `DataConfig` fields that are loader arguments (see `DatasetEntry.flags`).
LOADER_FLAGS = (
    "data_dir", "protocol", "image_size", "on_corrupt", "data_file", "target",
    "features", "categorical", "max_categories", "group", "split_column",
    "labels", "file_column", "text_column", "text_columns",
)  # fmt: skip


def _flag(name):
    return "--" + name.replace("_", "-")


@dataclasses.dataclass
class ModelConfig(ConfigSection):
    """The backbone and its settings (read by the data's modality)."""

    name = "model"
    title = "model: backbone"

    backbone: str = option(
        "auto",
        "auto: mlp (tabular), small_cnn (image), bilstm (text)",
        choices=("auto",) + all_backbones(),
    )
    hidden_units: tuple = option(
        (256, 128), "MLP backbone widths, comma-separated", parse=parse_ints
    )
    dropout: float = option(0.0, "dropout rate of the backbone")
    cnn_filters: tuple = option(
        (32, 64, 128),
        "small_cnn backbone: filters of its conv blocks, comma-separated",
        parse=parse_ints,
    )
    lstm_units: int = option(128, "bilstm backbone: units of each LSTM direction")
    input_clip: float | None = option(
        None,
        "clip standardised inputs to [-c, c] (robust to extreme raw values)",
    )
    resnet_weights: str | None = option(None, "local ImageNet ResNet-50 .h5 file")
    glove: str | None = option(None, "glove.*.txt file (default: packaged 6B-50d)")

    def __post_init__(self):
        self.hidden_units = tuple(int(u) for u in self.hidden_units)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"--hidden-units {self.hidden_units}: widths must be >= 1")
        self.cnn_filters = tuple(int(f) for f in self.cnn_filters)
        if not self.cnn_filters or min(self.cnn_filters) < 1:
            raise ValueError(f"--cnn-filters {self.cnn_filters}: widths must be >= 1")
        check_range("lstm_units", self.lstm_units, 1)
        check_range("dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_range("input_clip", self.input_clip, 0.0, low_open=True)


@dataclasses.dataclass
class ViewsConfig(ConfigSection):
    """The weak and strong views (read by the data's modality)."""

    name = "views"
    title = "views: weak/strong augmentation (tabular, image, text)"

    weak_noise: float = option(
        0.05, "weak view: Gaussian noise in feature standard deviations"
    )
    strong_noise: float = option(0.2, "strong view: Gaussian noise (tabular)")
    strong_dropout: float = option(
        0.2, "strong view: probability a feature is replaced by its mean"
    )
    augment_ops: str = option(
        "auto",
        "RandAugment operations; auto keeps orientation for angle targets",
        choices=("auto", "all", "photometric", "orientation_preserving"),
    )
    randaugment_ops: int = option(3, "RandAugment operations per image")
    randaugment_magnitude: float = option(4.0, "RandAugment magnitude (of 10)")
    synonym_source: str = option(
        "auto",
        "synonyms for the strong text view",
        choices=("auto", "wordnet", "mythes", "moby", "file"),
    )
    synonym_file: str | None = option(
        None, "word<TAB>synonym<TAB>... file (--synonym-source file)"
    )
    synonym_replace: float = option(0.3, "probability a word is replaced")
    synonym_insert: float = option(0.1, "probability a synonym is inserted")

    def __post_init__(self):
        for name in ("weak_noise", "strong_noise", "randaugment_magnitude"):
            check_range(name, getattr(self, name), 0.0)
        for name in ("strong_dropout", "synonym_replace", "synonym_insert"):
            check_range(name, getattr(self, name), 0.0, 1.0)
        check_range("randaugment_ops", self.randaugment_ops, 0)


@dataclasses.dataclass
class TrainingConfig(ConfigSection):
    """Methods, seeds, budget, batches and the optimizer."""

    name = "training"
    title = "training: methods, seeds, budget, optimizer"

    methods: tuple = option(
        ("supervised", "pseudo_label", "mean_teacher"),
        f"comma-separated, from: {', '.join(method_names())}",
        parse=parse_names,
    )
    seeds: tuple = option(
        (0,), "seeds: '0', '0,1,2' or a range '0-4'", parse=parse_seeds
    )
    epochs: int = option(40, "training epochs")
    steps_per_epoch: int | None = option(
        None, "default: one pass over the larger of the labeled/unlabeled sets"
    )
    batch_size: int = option(
        64, "labeled (and hold-out) batch size, global over replicas"
    )
    unlabeled_batch_size: int = option(256, "unlabeled batch size")
    learning_rate: float = option(1e-3, "Adam learning rate")
    weight_decay: float = option(
        0.0,
        "L2 coefficient added to the gradient before Adam's step (torch's "
        "Adam weight_decay, coupled; not AdamW)",
    )
    lr_decay_epochs: int | None = option(
        None, "multiply the learning rates by --lr-decay-factor every N epochs"
    )
    lr_decay_factor: float = option(0.1, "factor of the step decay")
    lr_schedule: str = option(
        "constant",
        "constant (or the step decay of --lr-decay-epochs) or cosine: from "
        "--learning-rate to 0 over epochs x steps-per-epoch steps",
        choices=("constant", "cosine"),
    )

    def __post_init__(self):
        self.methods, self.seeds = tuple(self.methods), tuple(self.seeds)
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown or not self.methods:
            raise ValueError(
                f"unknown method(s) {', '.join(unknown) or '(none given)'}; "
                f"valid: {', '.join(method_names())}"
            )
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed")
        for name in ("epochs", "steps_per_epoch", "batch_size", "unlabeled_batch_size"):
            check_range(name, getattr(self, name), 1)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("lr_decay_epochs", self.lr_decay_epochs, 1)
        check_range("lr_decay_factor", self.lr_decay_factor, 0.0, 1.0, low_open=True)
        if self.lr_schedule == "cosine" and self.lr_decay_epochs:
            raise ValueError(
                "--lr-schedule cosine and --lr-decay-epochs are two schedules; "
                "give one of them"
            )

    def optimizer(self, steps_per_epoch):
        """The run's compiled optimizer: `AdamL2` with the step or cosine decay."""
        rate = self.learning_rate
        if self.lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(
                rate, decay_steps=self.epochs * steps_per_epoch
            )
        elif self.lr_decay_epochs:
            rate = keras.optimizers.schedules.ExponentialDecay(
                rate,
                decay_steps=self.lr_decay_epochs * steps_per_epoch,
                decay_rate=self.lr_decay_factor,
                staircase=True,
            )
        return AdamL2(rate, l2=self.weight_decay)


@dataclasses.dataclass
class TeacherConfig(ConfigSection):
    """The fixed teacher of the methods that use one (PP-SSL family)."""

    name = "teacher"
    title = "fixed teacher (methods that use one: ppssl, ppi_*, ssl, only_labeled)"

    teacher: str = option(
        "linear_pretrain",
        "linear_pretrain (least squares on --pretrain-size unlabeled rows, "
        "removed from the unlabeled set) or a SavedModel / .keras path",
    )
    pretrain_size: int = option(500, "rows of the linear teacher's pretrain split")

    def __post_init__(self):
        check_range("pretrain_size", self.pretrain_size, 1)


@dataclasses.dataclass
class DistributionConfig(ConfigSection):
    """Strategy, XLA, determinism, checkpoints and resume."""

    name = "distribution"
    title = "distribution, XLA, checkpoints"

    strategy: str = option(
        "auto",
        "auto: MirroredStrategy when >1 GPU is visible; multi_worker: "
        "MultiWorkerMirroredStrategy from the TF_CONFIG environment variable",
        choices=STRATEGIES,
    )
    jit_compile: bool = option(False, "XLA-compile the train step (one device only)")
    deterministic: bool = option(
        False,
        "seeds + TF op determinism: reruns give identical results (slower; "
        "disables XLA)",
    )
    checkpoint_every: int = option(
        200,
        "save the full training state every N steps (and at every epoch end) "
        "to <output-dir>/<run>/checkpoints/; 0: epoch ends only",
    )
    resume: bool = option(
        False, "continue the run --run-name from its latest checkpoints"
    )
    profile_steps: tuple | None = option(
        None,
        "A,B: profile training steps A to B (counted from 1) of every method "
        "and seed with TensorFlow's profiler and print where the time went",
        parse=parse_profile_steps,
    )
    intra_op_threads: int | None = option(
        None,
        "TensorFlow's intra-op thread pool (default: one per logical CPU); "
        "set before anything is built and printed at start",
    )
    inter_op_threads: int | None = option(
        None, "TensorFlow's inter-op thread pool (default: one per logical CPU)"
    )

    def __post_init__(self):
        check_range("checkpoint_every", self.checkpoint_every, 0)
        check_range("intra_op_threads", self.intra_op_threads, 0)
        check_range("inter_op_threads", self.inter_op_threads, 0)
        if self.resume and self.strategy == "multi_worker":
            raise ValueError(
                "--resume is not supported with --strategy multi_worker yet: "
                "restart the workers without --resume"
            )

    @property
    def use_jit_compile(self):
        """`--jit-compile`, unless `--deterministic` (which disables XLA)."""
        return self.jit_compile and not self.deterministic


@dataclasses.dataclass
class OutputConfig(ConfigSection):
    """Where results, TensorBoard logs, checkpoints and SavedModels go."""

    name = "output"
    title = "output"

    output_dir: str = option(
        "runs",
        "runs root: <output-dir>/<run>/ gets results, TensorBoard, checkpoints",
    )
    export_dir: str = option(
        "savedmodels", "SavedModels go to <export-dir>/<run>/<method>/<version>/"
    )
    run_name: str | None = option(None, "default: <dataset>_<date>-<time>")
    verbose: int = option(
        1, "Keras fit verbosity (1: progress bars)", choices=(0, 1, 2)
    )
    write_checkpoints: bool = option(
        True, "write checkpoints (False on non-chief workers)", cli=False
    )


TRAINER_SECTIONS = (
    DataConfig,
    ModelConfig,
    ViewsConfig,
    TrainingConfig,
    TeacherConfig,
    DistributionConfig,
    OutputConfig,
)


@dataclasses.dataclass
class RunConfig:
    """Every setting of `python -m trainers.run`, by section.

    The defaults are the embedded default job: California Housing, 5 % labels,
    seed 0, Supervised vs PseudoLabel vs MeanTeacher, about a minute on 2 CPU
    cores. `methods` holds one section per method family (`ssl`,
    `mean_teacher`, `hpl`, `l2i`, `ppssl`, ...), keyed by section name;
    `method_overrides` values for one method only (`method_sections`);
    `preset` the `--preset` name, the values it set and the explicit flags
    that overrode them.

    Example:

    >>> config = RunConfig()
    >>> config.training.epochs, config.methods["ssl"].unlabeled_weight
    (40, 0.3)
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    views: ViewsConfig = dataclasses.field(default_factory=ViewsConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    distribution: DistributionConfig = dataclasses.field(
        default_factory=DistributionConfig
    )
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    methods: dict = dataclasses.field(
        default_factory=lambda: {s.name: s() for s in config_sections()}
    )
    method_overrides: dict = dataclasses.field(default_factory=dict)
    preset: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.distribution.resume and not self.output.run_name:
            raise ValueError("--resume needs the --run-name of the run to continue")

    def method_sections(self, method):
        """`methods` with `method`'s own values (`method_overrides`, from a
        preset's `method:section.field` keys) applied."""
        sections = dict(self.methods)
        for key, value in self.method_overrides.get(method, {}).items():
            section, field = key.split(".", 1)
            sections[section] = dataclasses.replace(sections[section], **{field: value})
        return sections

    def to_dict(self):
        """The configuration as nested plain data (for results.json)."""
        return dataclasses.asdict(self)


def all_sections():
    """Every section class: the trainer's, then the methods'."""
    return TRAINER_SECTIONS + config_sections()
