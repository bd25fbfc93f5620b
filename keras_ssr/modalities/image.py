"""`ImageModality`: CNN backbones, per-image RandAugment views, `images` input."""

import tensorflow as tf

from keras_ssr.modalities.modality import Modality


class ImageModality(Modality):
    """Images: `SmallCNNBackbone` or `ResNet50Backbone`, `ImageViews`.

    Reads `model.dropout`, `model.resnet_weights` and `views.augment_ops`,
    `views.randaugment_ops`, `views.randaugment_magnitude`. Labeled batches get
    the weak view (FixMatch). A dataset whose target some operations would
    change (an angle) passes its label-preserving `ImageViews` settings as
    `make_views(config=...)`.

    Example:

    >>> ImageModality.backbones
    ('small_cnn', 'resnet50')
    """

    name = "image"
    backbones = ("small_cnn", "resnet50")
    spec_name = "images"

    def backbone(self, name, data, split):
        if name == "resnet50":
            from keras_ssr.models.resnet50_backbone import ResNet50Backbone

            return ResNet50Backbone(
                weights_path=self.model.resnet_weights, name="backbone"
            )
        from keras_ssr.models.small_cnn_backbone import SmallCNNBackbone

        return SmallCNNBackbone(
            self.model.cnn_filters, dropout=self.model.dropout, name="backbone"
        )

    def make_views(self, data, split, regressor, raw_weak=False, config=None):
        from keras_ssr.data.image_views import ImageViews

        kwargs = dict(config or {})
        if self.views.augment_ops != "auto":
            kwargs["ops"] = self.views.augment_ops
        views = ImageViews(
            num_ops=self.views.randaugment_ops,
            magnitude=self.views.randaugment_magnitude,
            **kwargs,
        )
        if raw_weak:
            return _RawWeak(views), None
        return views, views.weak


class _RawWeak:
    """Views whose weak view is the input itself (as float32)."""

    def __init__(self, views):
        self.views = views

    def __call__(self, x, seed):
        return tf.cast(x, "float32"), self.views.strong(x, seed)
