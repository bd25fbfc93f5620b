"""`MeanTeacher`: pseudo-labels from an exponential moving average of the model."""

import dataclasses

import keras

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.imputers import EMATeacher
from keras_ssr.methods.pseudo_label import PseudoLabel, PseudoLabelConfig
from keras_ssr.methods.ssr_model import SSLConfig


@dataclasses.dataclass
class MeanTeacherConfig(ConfigSection):
    """The EMA teacher's setting (Mean Teacher, L2I's mean-teacher imputer).

    Args:
        ema_decay: decay of the teacher's moving average, in [0, 1).
        ema_warmup: warm the decay up as `min(1 - 1/(k+1), ema_decay)` at the
            k-th update (reference codes).
    """

    name = "mean_teacher"
    title = "Mean Teacher (mean_teacher; L2I with --l2i-imputer mean_teacher)"

    ema_decay: float = option(
        0.99,
        "Mean Teacher EMA decay",
        source="trainer default for short CPU runs (paper: 0.999)",
    )
    ema_warmup: bool = option(
        False,
        "decay min(1 - 1/(k+1), --ema-decay) at the k-th teacher update",
        source="Mean Teacher and L2I reference codes",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class MeanTeacher(PseudoLabel):
    """PseudoLabel whose targets come from an EMA teacher of the regressor.

    After every optimizer step, each teacher weight t follows its student
    weight s: `t <- decay * t + (1 - decay) * s` (`EMATeacher`). The teacher
    predicts on the weak view; the student is trained to match it on the strong
    view. The student is what is evaluated and exported.

    Args:
        regressor: the student `SSRRegressor`.
        ema_decay: decay of the teacher's moving average, in [0, 1).
        ema_warmup: the k-th update's decay is `min(1 - 1/(k+1), ema_decay)`.
        **kwargs: `PseudoLabel` arguments (`pseudo_label_mode`: the teacher's
            dropout is active in `"training"` mode; `unlabeled_weight`,
            `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = MeanTeacher(SSRRegressor(MLPBackbone((8,))), ema_decay=0.99)

    References:
        Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017.
    """

    config_sections = (SSLConfig, PseudoLabelConfig, MeanTeacherConfig)

    def __init__(self, regressor, ema_decay=0.999, ema_warmup=False, **kwargs):
        super().__init__(regressor, **kwargs)
        self.ema_decay = float(ema_decay)
        self.ema_warmup = bool(ema_warmup)
        self.imputer = EMATeacher(regressor, ema_decay, ema_warmup, name="imputer")

    @property
    def teacher(self):
        """The teacher `SSRRegressor`."""
        return self.imputer.teacher

    def get_config(self):
        config = super().get_config()
        config.update(ema_decay=self.ema_decay, ema_warmup=self.ema_warmup)
        return config
