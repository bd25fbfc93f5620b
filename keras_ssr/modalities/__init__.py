"""Modalities: per input kind (tabular, image, text), the backbone, views and
serving input spec a trainer needs (`get_modality(data.modality)`)."""

from keras_ssr.modalities.image import ImageModality
from keras_ssr.modalities.modality import Modality
from keras_ssr.modalities.tabular import TabularModality
from keras_ssr.modalities.text import TextModality

MODALITIES = {
    "tabular": TabularModality,
    "image": ImageModality,
    "text": TextModality,
}


def get_modality(name):
    """The `Modality` class for `RegressionData.modality` `name`."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; valid: {', '.join(MODALITIES)}")
    return MODALITIES[name]


def all_backbones():
    """Every backbone name of every modality, in order."""
    return tuple(b for cls in MODALITIES.values() for b in cls.backbones)


__all__ = ["MODALITIES", "Modality", "all_backbones", "get_modality"]
