"""`TabularModality`: MLP backbone, noise/dropout views, `features` input."""

from keras_ssr.data.tabular_views import TabularViews
from keras_ssr.modalities.modality import Modality
from keras_ssr.models.mlp_backbone import MLPBackbone


class TabularModality(Modality):
    """Tables: an `MLPBackbone`, `TabularViews`, float32 `features` input.

    Reads `model.hidden_units`, `model.dropout`, `model.input_clip` and
    `views.weak_noise`, `views.strong_noise`, `views.strong_dropout`. Inputs are
    standardised inside the regressor with the training rows' statistics.

    Example:

    >>> import types
    >>> model = types.SimpleNamespace(backbone="auto", hidden_units=(8,),
    ...                               dropout=0.0, input_clip=None)
    >>> TabularModality(model, None).backbones
    ('mlp',)
    """

    name = "tabular"
    backbones = ("mlp",)
    spec_name = "features"

    def input_scaling(self, data, split):
        x_train = data.x[split.train]
        return {
            "input_mean": x_train.mean(axis=0),
            "input_std": x_train.std(axis=0),
            "input_clip": self.model.input_clip,
        }

    def backbone(self, name, data, split):
        return MLPBackbone(
            self.model.hidden_units, dropout=self.model.dropout, name="backbone"
        )

    def make_views(self, data, split, regressor, raw_weak=False, config=None):
        views = TabularViews.fit(
            data.x[split.train],
            weak_noise=0.0 if raw_weak else self.views.weak_noise,
            strong_noise=self.views.strong_noise,
            strong_dropout=self.views.strong_dropout,
        )
        return views, None
