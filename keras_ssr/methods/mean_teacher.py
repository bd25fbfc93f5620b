"""`MeanTeacher`: pseudo-labels from an exponential moving average of the model."""

import keras
import tensorflow as tf

from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.models.ssr_regressor import SSRRegressor


@keras.saving.register_keras_serializable(package="keras_ssr")
class MeanTeacher(PseudoLabel):
    """PseudoLabel whose targets come from an EMA teacher of the regressor.

    After every optimizer step, each teacher weight t follows its student
    weight s: `t <- decay * t + (1 - decay) * s`. The teacher predicts on the
    weak view; the student is trained to match it on the strong view. The
    student is what is evaluated and exported.

    Args:
        regressor: the student `SSRRegressor`.
        ema_decay: decay of the teacher's moving average, in [0, 1).
        **kwargs: `PseudoLabel` arguments (`unlabeled_weight`, `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> model = MeanTeacher(SSRRegressor(MLPBackbone((8,))), ema_decay=0.99)

    References:
        Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017.
    """

    def __init__(self, regressor, ema_decay=0.999, **kwargs):
        super().__init__(regressor, **kwargs)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}.")
        self.ema_decay = float(ema_decay)
        self.teacher = SSRRegressor.from_config(regressor.get_config())

    def build_method(self, input_shape):
        self.teacher.build(input_shape)
        self.teacher.trainable = False
        for t, s in zip(self.teacher.weights, self.regressor.weights, strict=True):
            t.assign(s)

    def pseudo_labels(self, x_weak):
        return keras.ops.stop_gradient(
            self.teacher.standardized(x_weak, training=False)
        )

    def after_update(self, batch):
        context = tf.distribute.get_replica_context()
        if tf.distribute.has_strategy() and context is not None:
            context.merge_call(lambda _: self.update_teacher())
        else:
            self.update_teacher()

    def update_teacher(self):
        """One EMA step of every teacher weight toward its student weight."""
        decay = self.ema_decay
        for t, s in zip(self.teacher.weights, self.regressor.weights, strict=True):
            t.assign(decay * t + (1.0 - decay) * s)

    def get_config(self):
        config = super().get_config()
        config.update(ema_decay=self.ema_decay)
        return config
