"""Trains one method on one seed's split and evaluates it: the trainer's core."""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.callbacks.hpl_diagnostics import HPLDiagnostics
from keras_ssr.data.split import SSRSplit
from keras_ssr.data.streams import make_eval_stream, make_train_stream, steps_per_epoch
from keras_ssr.data.tabular_views import TabularViews
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.hpl import HPL
from keras_ssr.methods.registry import get_method
from keras_ssr.methods.ssr_model import METRIC_NAMES
from keras_ssr.models.mlp_backbone import MLPBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor
from trainers.teacher_setup import prepare_teacher

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


def make_split(data, config, seed, method):
    """The seed's split; every training row is labeled for `fully_supervised`."""
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
    x_train = data.x[split.train]
    scaler = TargetScaler.fit(data.y[split.labeled])
    regressor = SSRRegressor(
        MLPBackbone(config.hidden_units, dropout=config.dropout, name="backbone"),
        input_mean=x_train.mean(axis=0),
        input_std=x_train.std(axis=0),
        input_clip=config.input_clip,
        target_mean=scaler.mean,
        target_std=scaler.std,
        name="regressor",
    )
    name = "supervised" if method == FULLY_SUPERVISED else method
    model = get_method(name)(regressor, **method_kwargs(name, config, steps))
    model.build((None, data.num_features))
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    model.optimizer.build(model.trainable_weights_to_update())
    return model, scaler


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


def train_and_evaluate(method, data, config, seed, run_dir, strategy):
    """Trains `method` on `seed`'s split, restores its best epoch, tests it."""
    keras.utils.set_random_seed(seed)
    split = make_split(data, config, seed, method)
    teacher, split = prepare_teacher(method, data, split, config, seed)
    tag = os.path.join(method, f"seed_{seed}")
    steps = config.steps_per_epoch or steps_per_epoch(
        len(split.labeled),
        len(split.unlabeled),
        config.batch_size,
        config.unlabeled_batch_size,
    )
    with strategy.scope():
        model, scaler = build_model(method, config, data, split, steps)
    stream, views = _train_stream(model, data, split, scaler, teacher, config, seed)
    validation = make_eval_stream(data.x[split.validation], data.y[split.validation])
    checkpoint = os.path.join(run_dir, "checkpoints", tag, "best.weights.h5")
    tensorboard_dir = os.path.join(run_dir, "tensorboard", tag)
    history = model.fit(
        stream,
        epochs=config.epochs,
        steps_per_epoch=steps,
        validation_data=validation,
        callbacks=_callbacks(checkpoint, tensorboard_dir)
        + _method_callbacks(model, data, split, views, config, tensorboard_dir),
        verbose=config.verbose,
        shuffle=False,
    )
    model.load_weights(checkpoint)
    val_mse = history.history["val_mse"]
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


def _views(data, split, config, unaugmented=False):
    return TabularViews.fit(
        data.x[split.train],
        weak_noise=0.0 if unaugmented else config.weak_noise,
        strong_noise=config.strong_noise,
        strong_dropout=config.strong_dropout,
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


def _train_stream(model, data, split, scaler, teacher, config, seed):
    """The three-stream training pipeline (with teacher labels) and its views."""
    # Prediction-powered gradients need the unlabeled rows unaugmented.
    views = _views(data, split, config, unaugmented=teacher is not None)
    labeled, holdout = holdout_split(split.labeled, config.holdout_fraction, seed)
    labels = _teacher_labels(teacher, data, scaler, labeled, split.unlabeled)
    _calibrate(model, data, scaler, labeled, split.unlabeled, labels, config)
    stream = make_train_stream(
        _rows(data, scaler, labeled),
        data.x[split.unlabeled],
        views,
        labeled_batch_size=config.batch_size,
        unlabeled_batch_size=config.unlabeled_batch_size,
        holdout=None if holdout is None else _rows(data, scaler, holdout),
        teacher=labels,
        seed=seed,
    )
    return stream, views


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


def _callbacks(checkpoint, tensorboard_dir):
    return [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            checkpoint,
            monitor="val_mse",
            mode="min",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False),
    ]


def _method_callbacks(model, data, split, views, config, tensorboard_dir):
    """HPL's uncertainty panels (with ground truth only in benchmark mode)."""
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
    gpus = tf.config.list_logical_devices("GPU")
    return (
        tf.distribute.MirroredStrategy()
        if len(gpus) > 1
        else tf.distribute.get_strategy()
    )
