"""`Modality`: the base of the per-input-kind objects (backbone, views, spec)."""

import tensorflow as tf

from keras_ssr.models.ssr_regressor import SSRRegressor


class Modality:
    """What depends on the kind of input: backbone, views, serving input spec.

    A subclass sets `name` (a `RegressionData.modality`), `backbones` (valid
    backbone names, the default first), `spec_name`/`spec_dtype` (the
    SavedModel signature's input) and implements `backbone(name, data, split)`
    and `make_views(...)`. Settings come from two objects with named
    attributes, e.g. a trainer's model and views configuration sections:
    `model.backbone`, `model.dropout`, ... and `views.weak_noise`, ...; each
    modality reads only the settings it uses.

    Args:
        model: settings of the model (`backbone` and the backbone's settings).
        views: settings of the weak/strong views.
    """

    name = ""
    backbones = ()
    spec_name = "inputs"
    spec_dtype = tf.float32

    def __init__(self, model, views):
        self.model = model
        self.views = views

    def backbone_name(self, data):
        """The backbone asked for (`"auto"`: the default), checked."""
        name = self.model.backbone
        if name == "auto":
            return self.backbones[0]
        if name not in self.backbones:
            raise ValueError(
                f"--backbone {name} does not take {self.name} inputs "
                f"({data.name}); use one of: {', '.join(self.backbones)}."
            )
        return name

    def build_regressor(self, data, split, scaler):
        """A fresh `SSRRegressor`: backbone + head + input and target scaling."""
        return SSRRegressor(
            self.backbone(self.backbone_name(data), data, split),
            target_mean=scaler.mean,
            target_std=scaler.std,
            name="regressor",
            **self.input_scaling(data, split),
        )

    def input_scaling(self, data, split):
        """`SSRRegressor` input-scaling arguments (none by default)."""
        return {}

    def backbone(self, name, data, split):
        """A fresh backbone layer called `name` for `data`."""
        raise NotImplementedError

    def make_views(self, data, split, regressor, raw_weak=False, config=None):
        """`(views, labeled_augment)` for the training stream.

        `views(x, seed) -> (weak, strong)` makes the unlabeled views;
        `labeled_augment(x, seed)` augments labeled batches (or `None`).

        Args:
            data: the `RegressionData`.
            split: the seed's `SSRSplit`.
            regressor: the `SSRRegressor` built by `build_regressor` (text
                views reuse its backbone's vocabulary).
            raw_weak: the weak view must be the raw input (prediction-powered
                methods: the teacher labels the very rows the student sees).
            config: dataset-specific view settings (e.g. label-preserving
                image operations for an angle target).
        """
        raise NotImplementedError

    @classmethod
    def input_spec(cls, data):
        """The SavedModel input signature of raw inputs of `data`."""
        return tf.TensorSpec((None,) + data.input_shape, cls.spec_dtype, cls.spec_name)
