"""`NanGuard`: stops training at the first non-finite loss term, naming it."""

import math

import keras
import numpy as np


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term.

    Attributes:
        terms: `{name: value}` of every non-finite logged value, loss terms
            before the total `"loss"`.
        epoch: 0-based epoch of the failing step.
        step: 0-based step within that epoch.
        global_step: 1-based count of training steps run, the failing one
            included (counted from the start of training, resumed runs too).
    """

    def __init__(self, terms, epoch, step, global_step):
        self.terms, self.epoch, self.step = terms, epoch, step
        self.global_step = global_step
        names = ", ".join(f"{name}={value}" for name, value in terms.items())
        super().__init__(
            f"training diverged: non-finite {names} at epoch {epoch + 1}, step "
            f"{step + 1} (global step {global_step}). Lower --learning-rate (or "
            "the method's step sizes) or check the inputs for extreme values "
            "(--input-clip)."
        )


class NanGuard(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` after the first step with a NaN/inf log.

    Unlike `keras.callbacks.TerminateOnNaN`, which only stops after the step,
    the error names every non-finite loss term (the method's `loss_terms`, e.g.
    `outer_loss` of HPL) and the step, and the caller decides what to keep.
    Every value in the step's logs is checked: the per-term running means turn
    NaN at the first step that produces one.

    Args:
        initial_step: training steps already run (when resuming).

    Example:

    >>> guard = NanGuard()
    >>> guard.on_epoch_begin(0)
    >>> guard.on_train_batch_end(0, {"loss": 1.0})
    >>> try:
    ...     guard.on_train_batch_end(1, {"loss": float("nan"), "mae": 1.0})
    ... except NonFiniteLossError as error:
    ...     print(error.terms, error.global_step)
    {'loss': nan} 2
    """

    def __init__(self, initial_step=0):
        super().__init__()
        self.global_step = int(initial_step)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        terms = getattr(self.model, "loss_terms", ("loss",))
        bad = non_finite(logs or {}, terms)
        if bad:
            raise NonFiniteLossError(bad, self._epoch, batch, self.global_step)


def non_finite(logs, loss_terms=("loss",)):
    """`{name: value}` of the non-finite values in `logs`.

    Ordered to point at the cause: the loss terms other than the total first
    (in `loss_terms` order), then the total `"loss"`, then anything else
    (metrics).
    """
    bad = {}
    for name, value in logs.items():
        value = np.asarray(value)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad[name] = float(value) if value.size == 1 else math.nan
    order = [t for t in loss_terms if t != "loss"] + ["loss"]
    rank = {name: i for i, name in enumerate(order)}
    return dict(sorted(bad.items(), key=lambda item: rank.get(item[0], len(rank))))
