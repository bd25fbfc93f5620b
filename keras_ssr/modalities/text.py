"""`TextModality`: BiLSTM + GloVe backbone, synonym views, `texts` input."""

import tensorflow as tf

from keras_ssr.modalities.modality import Modality


class TextModality(Modality):
    """Texts (or sentence pairs): `BiLSTMBackbone`, `TextViews` (synonyms).

    Reads `model.glove`, `model.dropout` and `views.synonym_source`,
    `views.synonym_file`, `views.synonym_replace`, `views.synonym_insert`. The
    backbone's vocabulary is built from the training texts; the views take
    synonyms for the words of that vocabulary (`regressor.backbone.vocabulary`).

    Example:

    >>> TextModality.backbones
    ('bilstm',)
    """

    name = "text"
    backbones = ("bilstm",)
    spec_name = "texts"
    spec_dtype = tf.string

    def backbone(self, name, data, split):
        from keras_ssr.models.bilstm_backbone import BiLSTMBackbone

        return BiLSTMBackbone.from_texts(
            _texts(data.x[split.train]),
            glove=self.model.glove,
            dropout=self.model.dropout,
            lstm_units=self.model.lstm_units,
            name="backbone",
        )

    def make_views(self, data, split, regressor, raw_weak=False, config=None):
        from keras_ssr.data.synonyms import build_synonym_table
        from keras_ssr.data.text_views import TextViews

        table = build_synonym_table(
            regressor.backbone.vocabulary,
            source=self.views.synonym_source,
            path=self.views.synonym_file,
        )
        views = TextViews(
            table,
            replace_probability=self.views.synonym_replace,
            insert_probability=self.views.synonym_insert,
        )
        return views, None


def _texts(x):
    """Every text of `x` as one flat list (sentence pairs are flattened)."""
    return [str(t) for t in x.reshape(-1)]
