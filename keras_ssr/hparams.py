"""TensorBoard HParams for a trained run: settings in, final metrics out.

`write_hparams` writes one HParams "session" per (method, seed): its settings
(data set, method, label ratio, seed, the method's hyperparameters) and its
final metrics, so TensorBoard's HParams dashboard lists every run in a table,
parallel-coordinates and scatter views and compares methods and sweeps across
runs (point `tensorboard --logdir` at the folder above several runs). The run
configuration is also written as a text summary (`run_config`, the TEXT tab).

No experiment-level `hparams_config` is written on purpose: TensorBoard then
infers the columns from every session it finds, so runs with different
settings (or written by different versions) sit in one table instead of the
first run's declaration hiding the others'.
"""

import numbers

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp


def write_hparams(log_dir, hparams, metrics, config=None, trial_id=None):
    """Writes the HParams summary, final metrics and run config of one run.

    Args:
        log_dir: a folder of its own for this (method, seed), e.g.
            `runs/<run>/tensorboard/<method>/seed_<s>/hparams`. Every scalar
            under it becomes a metric column, so keep the per-epoch logs out
            of it (a sibling folder).
        hparams: dict name -> value: bool, int, float or str; `None` is
            written as `"none"`, sequences as comma-joined text, other
            values with `str`. Nested dicts are flattened as `outer.inner`.
        metrics: dict name -> number, e.g. `{"validation/mse": 0.4,
            "test/mae": 0.5}` (nested dicts are flattened as `outer/inner`):
            the metric columns, written as scalars at step 0.
        config: optional dict of every setting of the run, written as a
            Markdown table under the text tag `run_config`.
        trial_id: optional session group name (default: a hash of `hparams`,
            so repeats of identical settings are grouped).

    Example:

    >>> import tempfile
    >>> write_hparams(tempfile.mkdtemp(),
    ...               {"method": "hpl", "label_ratio": 0.1, "seed": 0},
    ...               {"validation/mse": 0.41, "test/mae": 0.47})

    References:
        - TensorBoard, "Hyperparameter Tuning with the HParams Dashboard"
          (`tensorboard.plugins.hparams.api`).
    """
    values = {k: hparam_value(v) for k, v in _flat(hparams, ".").items()}
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams(values, trial_id=trial_id)
        for name, value in _flat(metrics, "/").items():
            tf.summary.scalar(name, float(value), step=0)
        if config is not None:
            tf.summary.text("run_config", config_markdown(config), step=0)
    writer.close()


def hparam_value(value):
    """A value HParams accepts: bool, int, float or str.

    Example:

    >>> hparam_value(None), hparam_value((256, 128)), hparam_value(np.float32(0.5))
    ('none', '256,128', 0.5)
    """
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def config_markdown(config):
    """A two-column Markdown table of `config` (nested dicts flattened)."""
    rows = [
        f"| {name} | {str(hparam_value(value)).replace('|', '/')} |"
        for name, value in sorted(_flat(config, ".").items())
    ]
    return "\n".join(["| setting | value |", "|---|---|"] + rows)


def _flat(values, sep, prefix=""):
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, sep, name + sep))
        else:
            out[name] = value
    return out
