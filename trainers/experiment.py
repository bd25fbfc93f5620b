"""Trains one method on one seed's split and evaluates it: the trainer's core.

Everything method-specific comes from the method's registry entry and its
declarations (`keras_ssr.methods.registry`), everything modality-specific from
the data's `Modality` (`keras_ssr.modalities`): this module knows no method or
data set by name.
"""

import dataclasses
import os

import keras
import numpy as np

from datasets.registry import get_dataset
from keras_ssr.callbacks.nan_guard import NonFiniteLossError
from keras_ssr.callbacks.profile_steps import ProfileSteps
from keras_ssr.callbacks.resumable_checkpoint import ResumableCheckpoint, fit_resumable
from keras_ssr.data.split import SSRSplit, holdout_split
from keras_ssr.data.streams import make_eval_stream, make_train_stream, steps_per_epoch
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.registry import get_method
from keras_ssr.methods.run_context import RunContext
from keras_ssr.methods.ssr_model import METRIC_NAMES
from keras_ssr.modalities import get_modality
from keras_ssr.models.ssr_regressor import SSRRegressor
from trainers.distribution import set_deterministic
from trainers.teacher_setup import prepare_teacher


@dataclasses.dataclass
class TrainResult:
    """What one (method, seed) run leaves: metrics and the best regressor."""

    method: str
    seed: int
    best_epoch: int
    validation: dict
    test: dict
    test_groups: dict
    regressor: SSRRegressor
    tensorboard_dir: str


class TrainingDiverged(RuntimeError):
    """A run stopped on a NaN/inf loss; `regressor` holds the last good weights.

    Attributes:
        method, seed: the failing run.
        regressor: the `SSRRegressor` restored from the last good checkpoint
            (`None` when no checkpoint was written before the failure).
        checkpoint: path of that checkpoint (or `None`).
    """

    def __init__(self, message, method, seed, regressor, checkpoint):
        super().__init__(message)
        self.method, self.seed = method, seed
        self.regressor, self.checkpoint = regressor, checkpoint


def load_data(config):
    """Loads `config.data.dataset` with the loader flags the user set.

    Raises:
        ValueError: for a flag (e.g. `--protocol`) the data set does not take.
    """
    entry = get_dataset(config.data.dataset)
    return entry.load(**config.data.loader_kwargs(entry))


def modality_of(data, config):
    """The `Modality` of `data`, with the run's model and views settings."""
    return get_modality(data.modality)(config.model, config.views)


def make_split(data, config, seed, entry):
    """The seed's split; every training row is labeled for a method whose
    entry labels all rows (`fully_supervised`).

    A dataset with a protocol split (`data.split_rows`) keeps its
    train/validation/test parts; only the labeled subset is drawn.
    """
    settings = config.data
    split = SSRSplit.from_data(
        data,
        label_ratio=settings.label_ratio,
        num_labels=settings.num_labels,
        validation_ratio=settings.validation_ratio,
        test_ratio=settings.test_ratio,
        seed=seed,
    )
    return split.all_labeled(data.has_target) if entry.labels_all_rows else split


def build_model(method, config, data, split, steps):
    """The method model around a fresh regressor, compiled (call it under the
    strategy's scope); returns `(model, target scaler)`."""
    scaler = TargetScaler.fit(data.y[split.labeled])
    regressor = modality_of(data, config).build_regressor(data, split, scaler)
    entry = get_method(method)
    kwargs = entry.kwargs(
        config.method_sections(method), config.training.epochs * steps
    )
    if entry.uses_unlabeled_index:
        kwargs["num_unlabeled"] = max(len(split.unlabeled), len(split.labeled))
    model = entry(regressor, **kwargs)
    model.build((None,) + data.input_shape)
    model.compile(
        optimizer=config.training.optimizer(steps),
        jit_compile=True if config.distribution.use_jit_compile else "auto",
    )
    model.build_optimizers()
    return model, scaler


@dataclasses.dataclass
class PreparedRun:
    """A (method, seed) ready to `fit`: model, input stream and context."""

    model: object
    make_stream: object
    context: RunContext
    split: SSRSplit
    steps_per_epoch: int


def _callbacks(model, context, config, tensorboard_dir):
    """TensorBoard, the method's own callbacks and, with `--profile-steps`, the
    profiler."""
    callbacks = [keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False)]
    callbacks += model.callbacks(context)
    if config.distribution.profile_steps:
        start, stop = config.distribution.profile_steps
        callbacks.append(ProfileSteps(tensorboard_dir, start, stop))
    return callbacks


def prepare_run(method, data, config, seed, strategy, log_dir):
    """Split, teacher, model (built under `strategy`) and input pipeline of one
    (method, seed); the method's `prepare` hook has run.

    Args:
        method: a registered method name.
        data: the `RegressionData`.
        config: the `RunConfig`.
        seed: the run's seed.
        strategy: the `tf.distribute` strategy to build the model under.
        log_dir: the run's TensorBoard directory for this method and seed.
    """
    entry = get_method(method)
    split = make_split(data, config, seed, entry)
    teacher, split = prepare_teacher(entry, data, split, config.teacher, seed)
    check_split(method, entry, split)
    steps = config.training.steps_per_epoch or steps_per_epoch(
        len(split.labeled),
        len(split.unlabeled),
        config.training.batch_size,
        config.training.unlabeled_batch_size,
    )
    with strategy.scope():
        model, scaler = build_model(method, config, data, split, steps)
    make_stream, context = train_inputs(
        model, entry, data, split, scaler, teacher, config, seed, log_dir
    )
    model.prepare(context)
    return PreparedRun(model, make_stream, context, split, steps)


def train_and_evaluate(method, data, config, seed, run_dir, strategy):
    """Trains `method` on `seed`'s split, restores its best epoch, tests it.

    With `config.distribution.resume` it continues from the latest checkpoint
    under `run_dir/checkpoints/<method>/seed_<seed>/resume` (see
    `fit_resumable`).

    Raises:
        TrainingDiverged: on a NaN/inf loss term, with the last good weights.
    """
    if config.distribution.deterministic:
        set_deterministic(seed, config.distribution.jit_compile)
    keras.utils.set_random_seed(seed)
    tag = os.path.join(method, f"seed_{seed}")
    tensorboard_dir = os.path.join(run_dir, "tensorboard", tag)
    run = prepare_run(method, data, config, seed, strategy, tensorboard_dir)
    model, split = run.model, run.split
    checkpoints = os.path.join(run_dir, "checkpoints", tag)
    resumable = ResumableCheckpoint(
        os.path.join(checkpoints, "resume"),
        steps_per_epoch=run.steps_per_epoch,
        save_every=config.distribution.checkpoint_every,
        write=config.output.write_checkpoints,
    )
    best_path = os.path.join(checkpoints, "best.weights.h5")
    try:
        history = fit_resumable(
            model,
            run.make_stream,
            resumable,
            epochs=config.training.epochs,
            resume=config.distribution.resume,
            best_path=best_path,
            validation_data=make_eval_stream(
                data.x[split.validation], data.y[split.validation]
            ),
            callbacks=_callbacks(model, run.context, config, tensorboard_dir),
            verbose=config.output.verbose,
        )
    except NonFiniteLossError as error:
        raise _diverged(error, model, resumable, method, seed) from error
    model.load_weights(best_path)
    return TrainResult(
        method=method,
        seed=seed,
        best_epoch=int(np.argmin(history["val_mse"])) + 1,
        validation=_evaluate(model, data, split.validation),
        test=_evaluate(model, data, split.test),
        test_groups=_group_metrics(model, data, split.test),
        regressor=model.inference_model(),
        tensorboard_dir=tensorboard_dir,
    )


def _diverged(error, model, resumable, method, seed):
    """A `TrainingDiverged` with the last good checkpoint restored into `model`."""
    good = resumable.latest
    if good is not None:
        resumable.restore()
    return TrainingDiverged(
        f"{method}, seed {seed}: {error} Last good checkpoint: "
        f"{good or 'none (diverged before the first save)'}.",
        method,
        seed,
        model.inference_model() if good is not None else None,
        good,
    )


def check_split(method, entry, split):
    """Refuses splits a method cannot train on, saying what to change."""
    if len(split.labeled) == 0:
        raise ValueError(
            "The labeled split is empty: give --num-labels >= 1 or a larger "
            "--label-ratio."
        )
    if entry.uses_unlabeled and len(split.unlabeled) == 0:
        hint = (
            " (after the teacher's --pretrain-size rows)" if entry.uses_teacher else ""
        )
        raise ValueError(
            f"{method} needs unlabeled rows but the unlabeled split is empty"
            f"{hint}: lower --label-ratio / --num-labels, or train "
            "'supervised' / 'fully_supervised' instead."
        )
    if len(split.validation) == 0:
        raise ValueError(
            "The validation split is empty: the data set is too small for its "
            "validation ratio; use more rows."
        )


def _rows(data, scaler, index):
    """Raw features and standardised targets of the rows `index`."""
    return data.x[index], scaler.transform(data.y[index])


def train_inputs(model, entry, data, split, scaler, teacher, config, seed, log_dir):
    """`(make_stream, context)`: the training pipeline's inputs, prepared once.

    The views, the hold-out split (for methods with a hold-out stream) and the
    teacher's labels are computed here, once per (method, seed);
    `make_stream()` then builds a fresh three-stream `tf.data` pipeline over
    them (one per `fit` call, see `fit_resumable`), and `context` is the
    `RunContext` for the method's `prepare` and `callbacks`.
    """
    views, augment = modality_of(data, config).make_views(
        data,
        split,
        model.regressor,
        raw_weak=entry.raw_unlabeled_view,
        config=get_dataset(config.data.dataset).views,
    )
    fraction = config.data.holdout_fraction if entry.uses_holdout else 0.0
    labeled, holdout = holdout_split(split.labeled, fraction, seed)
    labeled_rows = _rows(data, scaler, labeled)
    holdout_rows = None if holdout is None else _rows(data, scaler, holdout)
    labels = None
    if teacher is not None:
        labels = tuple(
            teacher.standardized_labels(data.x[rows], scaler)
            for rows in (labeled, split.unlabeled)
        )
    unlabeled = split.unlabeled
    context = RunContext(
        log_dir=log_dir,
        unlabeled_x=data.x[unlabeled],
        views=views,
        labeled=labeled_rows,
        teacher_labels=labels,
        unlabeled_y=_benchmark_truth(data, unlabeled, config.data.benchmark_mode),
        unlabeled_groups=None if data.groups is None else data.groups[unlabeled],
        group_names=data.group_names,
    )

    def make_stream():
        return make_train_stream(
            labeled_rows,
            context.unlabeled_x,
            views,
            labeled_batch_size=config.training.batch_size,
            unlabeled_batch_size=config.training.unlabeled_batch_size,
            holdout=holdout_rows,
            teacher=labels,
            labeled_augment=augment,
            unlabeled_index=entry.uses_unlabeled_index,
            seed=seed,
        )

    return make_stream, context


def _benchmark_truth(data, unlabeled, benchmark_mode):
    """The unlabeled rows' targets for diagnostics (`--benchmark-mode`), when
    every one of them has a target."""
    if not benchmark_mode:
        return None
    if not data.has_target[unlabeled].all():
        raise ValueError(
            "--benchmark-mode needs the targets of every unlabeled row, but "
            f"{data.name} has rows without one: drop --benchmark-mode."
        )
    return data.y[unlabeled]


def _evaluate(model, data, rows):
    stream = make_eval_stream(data.x[rows], data.y[rows])
    metrics = model.evaluate(stream, verbose=0, return_dict=True)
    return {name: float(metrics[name]) for name in METRIC_NAMES}


def _group_metrics(model, data, rows):
    if data.groups is None:
        return {}
    return {
        name: _evaluate(model, data, rows[data.groups[rows] == gid])
        for gid, name in enumerate(data.group_names)
        if np.any(data.groups[rows] == gid)
    }
