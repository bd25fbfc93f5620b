"""Trains one method on one seed's split and evaluates it: the trainer's core."""

import dataclasses
import os

import keras
import numpy as np

from keras_ssr.callbacks.hpl_diagnostics import HPLDiagnostics
from keras_ssr.callbacks.lambda_trajectory import LambdaTrajectory
from keras_ssr.callbacks.nan_guard import NanGuard, NonFiniteLossError
from keras_ssr.callbacks.resumable_checkpoint import ResumableCheckpoint
from keras_ssr.data.split import SSRSplit
from keras_ssr.data.streams import make_eval_stream, make_train_stream, steps_per_epoch
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.hpl import HPL
from keras_ssr.methods.registry import get_method
from keras_ssr.methods.ssr_model import METRIC_NAMES
from keras_ssr.models.ssr_regressor import SSRRegressor
from trainers.distribution import adapt_model, make_strategy, set_deterministic
from trainers.modality import build_regressor, make_views, with_validation
from trainers.teacher_setup import TEACHER_METHODS, prepare_teacher

# "fully_supervised" trains `Supervised` with every training label: the upper bound.
FULLY_SUPERVISED = "fully_supervised"


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


def make_split(data, config, seed, method):
    """The seed's split; every training row is labeled for `fully_supervised`.

    A dataset with a protocol split (`data.split_rows`) keeps its
    train/validation/test parts; only the labeled subset is drawn.
    """
    if data.split_rows is not None:
        split = SSRSplit.from_protocol(
            with_validation(data.split_rows, config.validation_ratio, seed),
            label_ratio=config.label_ratio,
            num_labels=config.num_labels,
            seed=seed,
        )
    else:
        split = SSRSplit.from_size(
            data.num_rows,
            label_ratio=config.label_ratio,
            num_labels=config.num_labels,
            validation_ratio=config.validation_ratio,
            test_ratio=config.test_ratio,
            seed=seed,
        )
    if method == FULLY_SUPERVISED:
        split = SSRSplit(split.train, split.train[:0], split.validation, split.test)
    return split


def build_model(method, config, data, split, steps):
    """The method model around a fresh regressor, compiled, under the strategy."""
    scaler = TargetScaler.fit(data.y[split.labeled])
    regressor = build_regressor(data, split, config, scaler)
    name = "supervised" if method == FULLY_SUPERVISED else method
    model = get_method(name)(regressor, **method_kwargs(name, config, steps))
    model.build((None,) + data.input_shape)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        jit_compile=True if use_jit_compile(config) else "auto",
    )
    model.optimizer.build(model.trainable_weights_to_update())
    return adapt_model(model), scaler


# Method constructor argument -> `RunConfig` field, per method family.
_HPL_ARGS = {
    "unroll": "unroll",
    "unroll_learning_rate": "unroll_learning_rate",
    "meta_period": "meta_period",
    "meta_learning_rate": "meta_learning_rate",
    "outer_log_variance_weight": "outer_log_variance_weight",
    "loss_form": "hpl_loss_form",
    "input_form": "uncertainty_input",
    "log_variance_range": "log_variance_range",
    "head_learning_rate": "head_learning_rate",
}
_L2I_ARGS = {
    "imputer": "l2i_imputer",
    "unroll": "l2i_unroll",
    "unroll_learning_rate": "l2i_unroll_learning_rate",
    "imputation_learning_rate": "imputation_learning_rate",
    "tanh_unlabeled": "l2i_tanh_unlabeled",
    "ema_decay": "ema_decay",
}
_PPI_ARGS = {"lambda_value": "ppi_lambda", "lambda_diameter": "lambda_diameter"}
_METHOD_ARGS = {
    "ppssl": _PPI_ARGS,
    "ppi_fixed": _PPI_ARGS,
    "mean_teacher": {"ema_decay": "ema_decay"},
    "hpl": _HPL_ARGS,
    "hpl_joint": _HPL_ARGS,
    "l2i_v1": _L2I_ARGS,
    "l2i_v2": _L2I_ARGS,
}


def method_kwargs(name, config, steps):
    """Constructor arguments of a method, from the run configuration."""
    if name == "supervised":
        return {}
    ramp = name not in ("ppssl", "ppi_fixed", "ppi_closed_form", "only_labeled")
    kwargs = {
        "unlabeled_weight": config.unlabeled_weight,
        "rampup_steps": int(ramp * config.rampup_fraction * config.epochs * steps),
    }
    for arg, field in _METHOD_ARGS.get(name, {}).items():
        kwargs[arg] = getattr(config, field)
    return kwargs


def use_jit_compile(config):
    """`--jit-compile`, unless `--deterministic` (op determinism disables XLA)."""
    return getattr(config, "jit_compile", False) and not getattr(
        config, "deterministic", False
    )


def train_and_evaluate(method, data, config, seed, run_dir, strategy):
    """Trains `method` on `seed`'s split, restores its best epoch, tests it.

    With `config.resume` it continues from the latest checkpoint under
    `run_dir/checkpoints/<method>/seed_<seed>/resume` (see `fit_resumable`).

    Raises:
        TrainingDiverged: on a NaN/inf loss term, with the last good weights.
    """
    if getattr(config, "deterministic", False):
        set_deterministic(seed, getattr(config, "jit_compile", False))
    keras.utils.set_random_seed(seed)
    split = make_split(data, config, seed, method)
    teacher, split = prepare_teacher(method, data, split, config, seed)
    check_split(method, split)
    tag = os.path.join(method, f"seed_{seed}")
    steps = config.steps_per_epoch or steps_per_epoch(
        len(split.labeled),
        len(split.unlabeled),
        config.batch_size,
        config.unlabeled_batch_size,
    )
    with strategy.scope():
        model, scaler = build_model(method, config, data, split, steps)
    make_stream, views = train_inputs(model, data, split, scaler, teacher, config, seed)
    validation = make_eval_stream(data.x[split.validation], data.y[split.validation])
    checkpoint = os.path.join(run_dir, "checkpoints", tag, "best.weights.h5")
    tensorboard_dir = os.path.join(run_dir, "tensorboard", tag)
    resumable = ResumableCheckpoint(
        os.path.join(run_dir, "checkpoints", tag, "resume"),
        steps_per_epoch=steps,
        save_every=getattr(config, "checkpoint_every", 0),
        write=getattr(config, "write_checkpoints", True),
    )
    try:
        history = fit_resumable(
            model,
            make_stream,
            resumable,
            epochs=config.epochs,
            resume=getattr(config, "resume", False),
            best_path=checkpoint,
            validation_data=validation,
            callbacks=[keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False)]
            + _method_callbacks(model, data, split, views, config, tensorboard_dir),
            verbose=config.verbose,
        )
    except NonFiniteLossError as error:
        raise _diverged(error, model, resumable, method, seed) from error
    model.load_weights(checkpoint)
    val_mse = history["val_mse"]
    return TrainResult(
        method=method,
        seed=seed,
        best_epoch=int(np.argmin(val_mse)) + 1,
        validation=_evaluate(model, data, split.validation),
        test=_evaluate(model, data, split.test),
        test_groups=_group_metrics(model, data, split.test),
        regressor=model.regressor,
        tensorboard_dir=tensorboard_dir,
    )


def fit_resumable(
    model, make_stream, resumable, epochs, resume, best_path, callbacks, **fit_kwargs
):
    """`model.fit` on `make_stream()`, checkpointed and resumable mid-epoch.

    Every `resumable.save_every` steps and at every epoch end,
    `resumable` writes the whole training state. With `resume` the latest
    checkpoint is restored, the stream continues at the saved position
    (`make_stream().skip(global_step)`: the streams are seeded functions of
    their position) and a partly done epoch runs only its remaining steps; in
    deterministic mode the result equals an uninterrupted run. Without
    `resume` old checkpoints in that directory are deleted.

    Args:
        model: a compiled, built method model.
        make_stream: returns a fresh endless training `tf.data.Dataset`, one
            per `fit` call: a dataset with a seeded `shuffle` reshuffles
            differently for each new iterator, so reusing one would not
            continue the same sequence.
        resumable: a `ResumableCheckpoint` (its `steps_per_epoch` is used).
        epochs: total epochs of the run.
        resume: continue from the latest checkpoint if there is one.
        best_path: `.weights.h5` path of the best-`val_mse` weights.
        callbacks: further Keras callbacks.
        **fit_kwargs: passed to `fit` (`validation_data`, `verbose`).

    Returns:
        The per-epoch logs of the whole run: `{name: [value per epoch]}`.

    Raises:
        NonFiniteLossError: at the first step with a NaN/inf loss term.
    """
    resumable.set_model(model)
    position = resumable.restore() if resume else None
    if not resume:
        _clear(resumable.directory)
    start = position["global_step"] if position else 0
    best = min(resumable.history.get("val_mse", []), default=None)
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        best_path,
        monitor="val_mse",
        mode="min",
        save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=best,
    )
    guard = NanGuard(initial_step=start)
    every = [guard, best_checkpoint] + callbacks + [resumable]
    steps = resumable.steps_per_epoch
    while start < epochs * steps:
        epoch, done = divmod(start, steps)
        model.fit(
            make_stream().skip(start),
            initial_epoch=epoch,
            epochs=epoch + 1 if done else epochs,
            steps_per_epoch=steps - done,
            callbacks=every,
            shuffle=False,
            **fit_kwargs,
        )
        start = resumable.global_step
    return resumable.history


def _clear(directory):
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))


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
        model.regressor if good is not None else None,
        good,
    )


# Methods whose loss needs the unlabeled stream.
_LABELED_ONLY = ("supervised", FULLY_SUPERVISED, "only_labeled")


def check_split(method, split):
    """Refuses splits a method cannot train on, saying what to change."""
    if len(split.labeled) == 0:
        raise ValueError(
            "The labeled split is empty: give --num-labels >= 1 or a larger "
            "--label-ratio."
        )
    if method not in _LABELED_ONLY and len(split.unlabeled) == 0:
        hint = (
            " (after the teacher's --pretrain-size rows)"
            if method in TEACHER_METHODS
            else ""
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


def _teacher_labels(teacher, data, scaler, labeled, unlabeled):
    """The teacher's standardised predictions on both sets, once (or `None`)."""
    if teacher is None:
        return None
    return tuple(
        teacher.standardized_labels(data.x[rows], scaler)
        for rows in (labeled, unlabeled)
    )


def train_inputs(model, data, split, scaler, teacher, config, seed):
    """`(make_stream, views)`: the training pipeline's inputs, prepared once.

    The views, the hold-out split, the teacher's labels and the closed-form
    lambda are computed here, once per (method, seed); `make_stream()` then
    builds a fresh three-stream `tf.data` pipeline over them (one per `fit`
    call, see `fit_resumable`).
    """
    # Prediction-powered gradients need the unlabeled rows unaugmented.
    views, augment = make_views(
        data,
        split,
        config,
        unaugmented=teacher is not None,
        vocabulary=getattr(model.regressor.backbone, "vocabulary", None),
    )
    labeled, holdout = holdout_split(split.labeled, config.holdout_fraction, seed)
    labels = _teacher_labels(teacher, data, scaler, labeled, split.unlabeled)
    _calibrate(model, data, scaler, labeled, split.unlabeled, labels, config)
    labeled_rows = _rows(data, scaler, labeled)
    holdout_rows = None if holdout is None else _rows(data, scaler, holdout)
    unlabeled_x = data.x[split.unlabeled]

    def make_stream():
        return make_train_stream(
            labeled_rows,
            unlabeled_x,
            views,
            labeled_batch_size=config.batch_size,
            unlabeled_batch_size=config.unlabeled_batch_size,
            holdout=holdout_rows,
            teacher=labels,
            labeled_augment=augment,
            seed=seed,
        )

    return make_stream, views


def _calibrate(model, data, scaler, labeled, unlabeled, labels, config):
    """Sets `ppi_closed_form`'s lambda from the PPI++ closed form, before fit."""
    if getattr(model, "lambda_mode", None) != "closed_form":
        return
    model.calibrate_lambda(
        _rows(data, scaler, labeled),
        labels[0],
        data.x[unlabeled],
        labels[1],
        at=config.closed_form_at,
    )


def holdout_split(labeled, fraction, seed):
    """`(labeled rows, hold-out rows)`: with `fraction` 0 the hold-out stream
    samples the labeled rows independently (`None`); otherwise that fraction of
    the labeled rows is set aside as a separate hold-out split."""
    if not fraction:
        return labeled, None
    if not 0 < fraction < 1:
        raise ValueError(f"holdout_fraction={fraction} must be in [0, 1).")
    count = max(1, int(round(fraction * len(labeled))))
    if count >= len(labeled):
        raise ValueError(
            f"holdout_fraction={fraction} leaves no labeled rows out of "
            f"{len(labeled)}: use a smaller --holdout-fraction or more labels."
        )
    order = np.random.default_rng(seed + 1).permutation(labeled)
    return np.sort(order[count:]), np.sort(order[:count])


def _method_callbacks(model, data, split, views, config, tensorboard_dir):
    """HPL's uncertainty panels (with ground truth only in benchmark mode) and
    PP-SSL's per-step lambda trajectory."""
    if getattr(model, "lambda_mode", None) == "adaptive":
        return [LambdaTrajectory(os.path.join(tensorboard_dir, "lambda"))]
    if not isinstance(model, HPL) or len(split.unlabeled) == 0:
        return []
    truth = data.y[split.unlabeled] if config.benchmark_mode else None
    log_dir = os.path.join(tensorboard_dir, "diagnostics")
    return [HPLDiagnostics(log_dir, data.x[split.unlabeled], views, truth)]


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


def default_strategy():
    """MirroredStrategy over all GPUs when there are several, else the default."""
    return make_strategy("auto")
