"""`BiLSTMBackbone`: raw texts or sentence pairs -> features, GloVe + BiLSTM."""

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.data.glove import load_glove
from keras_ssr.data.text import build_vocabulary, standardize_text

PADDING, OOV = "", "[UNK]"


@keras.saving.register_keras_serializable(package="keras_ssr")
class BiLSTMBackbone(keras.layers.Layer):
    """Sentence encoder for raw strings: tokenise, embed, BiLSTM, max-pool.

    Tokenisation is inside the layer (so an exported model takes raw strings):
    `standardize_text` (lower case, punctuation as separate tokens), then a
    `keras.layers.TextVectorization` with the fixed `vocabulary` maps tokens
    to ids, truncating or padding to `max_length` tokens (id 0 = padding,
    id 1 = `[UNK]` for out-of-vocabulary words). An `Embedding` (initialised
    from GloVe by `from_texts`) feeds a bidirectional LSTM whose outputs are
    max-pooled over the non-padding time steps (the BiLSTM-max encoder of
    InferSent and the GLUE baselines), giving `u` of size `2 * lstm_units`.

    Single texts `(batch,)` give `u`. Sentence pairs `(batch, 2)` are encoded
    with shared weights into `u` and `v` and combined as
    `[u, v, |u - v|, u * v]` (InferSent; size `8 * lstm_units`), or, with
    `symmetric_pairs=True`, as `[u + v, |u - v|, u * v]` (size
    `6 * lstm_units`), which does not change when the two sentences swap.

    Args:
        vocabulary: list of tokens (standardised words), without the padding
            and `[UNK]` entries, which are added in front.
        embedding_dim: size of the word vectors (50 for GloVe 6B 50-d).
        lstm_units: units of each LSTM direction.
        max_length: tokens per sentence (the HPL paper uses 40).
        symmetric_pairs: combine pairs order-invariantly (see above).
        trainable_embeddings: fine-tune the word vectors (default: frozen
            GloVe, as the GLUE BiLSTM baselines).
        dropout: dropout rate on the output features.
        embeddings: optional initial `(len(vocabulary) + 2, embedding_dim)`
            matrix (rows 0 and 1: padding and `[UNK]`); not part of the config,
            the trained matrix is saved with the weights.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> backbone = BiLSTMBackbone(["good", "film"], embedding_dim=4, lstm_units=3)
    >>> backbone(tf.constant(["A good film", "bad"])).shape
    TensorShape([2, 6])
    >>> backbone(tf.constant([["good", "film"]])).shape
    TensorShape([1, 24])

    References:
        - Conneau et al., "Supervised Learning of Universal Sentence
          Representations from Natural Language Inference Data" (InferSent),
          EMNLP 2017.
        - Wang et al., "GLUE", ICLR 2019 (BiLSTM + GloVe baselines for STS-B).
    """

    def __init__(
        self,
        vocabulary,
        embedding_dim=50,
        lstm_units=128,
        max_length=40,
        symmetric_pairs=False,
        trainable_embeddings=False,
        dropout=0.0,
        embeddings=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary = [str(token) for token in vocabulary]
        if not self.vocabulary:
            raise ValueError("vocabulary is empty: give at least one token.")
        if PADDING in self.vocabulary or OOV in self.vocabulary:
            raise ValueError(
                f"vocabulary must not contain the padding ({PADDING!r}) or OOV "
                f"({OOV!r}) tokens: they are added in front."
            )
        self.embedding_dim = int(embedding_dim)
        self.lstm_units = int(lstm_units)
        self.max_length = int(max_length)
        self.symmetric_pairs = bool(symmetric_pairs)
        self.trainable_embeddings = bool(trainable_embeddings)
        self.dropout = float(dropout)
        self._initial_embeddings = _checked_embeddings(
            embeddings, len(self.vocabulary) + 2, self.embedding_dim
        )
        self.vectorizer = keras.layers.TextVectorization(
            standardize=None,
            split="whitespace",
            output_mode="int",
            output_sequence_length=self.max_length,
            vocabulary=self.vocabulary,
            name="vectorizer",
        )
        self.embedding = keras.layers.Embedding(
            len(self.vocabulary) + 2, self.embedding_dim, name="embedding"
        )
        self.embedding.trainable = self.trainable_embeddings
        self.encoder = keras.layers.Bidirectional(
            keras.layers.LSTM(self.lstm_units, return_sequences=True), name="bilstm"
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, name="dropout")

    @classmethod
    def from_texts(
        cls, texts, glove=None, max_tokens=20000, min_count=1, seed=0, **kwargs
    ):
        """A backbone whose vocabulary and embeddings come from training texts.

        The vocabulary is the `max_tokens` most frequent standardised tokens
        of `texts` seen at least `min_count` times (ties by alphabetical
        order). Embedding rows: GloVe vectors for the tokens GloVe has;
        tokens GloVe lacks get random normal vectors with the GloVe vectors'
        standard deviation (seeded), so they stay distinguishable; the
        padding and `[UNK]` rows are zero (unseen words map to `[UNK]`).

        Args:
            texts: training texts, `(n,)` or pairs `(n, 2)` (all sentences
                count).
            glove: a `glove.*.txt` path, `None` for the offline package
                vectors (`keras_ssr.data.glove.load_glove`), or `False` for
                random embeddings (no GloVe).
            max_tokens: maximum vocabulary size (without padding and `[UNK]`).
            min_count: minimum token frequency.
            seed: seed of the vectors of tokens missing from GloVe.
            **kwargs: other `BiLSTMBackbone` arguments (`embedding_dim` is
                taken from GloVe when GloVe is used).

        Example:

        >>> backbone = BiLSTMBackbone.from_texts(
        ...     ["a good film", "a bad film"], lstm_units=4)
        >>> backbone.vocabulary[:2], backbone.embedding_dim
        (['a', 'film'], 50)
        """
        vocabulary = build_vocabulary(texts, max_tokens, min_count)
        if glove is False:
            return cls(vocabulary, **kwargs)
        vectors, found = load_glove(vocabulary, glove)
        kwargs["embedding_dim"] = vectors.shape[1]
        embeddings = _with_missing_rows(vectors, found, seed)
        return cls(vocabulary, embeddings=embeddings, **kwargs)

    def build(self, input_shape):
        self.embedding.build((None, self.max_length))
        if self._initial_embeddings is not None:
            self.embedding.embeddings.assign(self._initial_embeddings)
            self._initial_embeddings = None
        self.encoder.build((None, self.max_length, self.embedding_dim))
        self.built = True

    @property
    def input_dtype(self):
        return "string"

    def call(self, inputs, training=False):
        texts = tf.convert_to_tensor(inputs, dtype=tf.string)
        pairs = texts.shape.rank == 2 and texts.shape[-1] == 2
        if texts.shape.rank == 2 and texts.shape[-1] == 1:
            texts = texts[:, 0]
        elif texts.shape.rank != 1 and not pairs:
            raise ValueError(
                "BiLSTMBackbone takes texts of shape (batch,) or sentence pairs "
                f"(batch, 2), got shape {texts.shape}."
            )
        encoded = self.encode(tf.reshape(texts, [-1]), training=training)
        if pairs:
            encoded = self._combined(encoded[0::2], encoded[1::2])
        return self.dropout_layer(encoded, training=training)

    def encode(self, texts, training=False):
        """Sentence vectors `(n, 2 * lstm_units)` of a flat batch of texts."""
        ids = self.vectorizer(standardize_text(texts))
        mask = keras.ops.not_equal(ids, 0)
        states = self.encoder(self.embedding(ids), mask=mask, training=training)
        keep = keras.ops.expand_dims(mask, -1)
        pooled = keras.ops.max(keras.ops.where(keep, states, -1e9), axis=1)
        nonempty = keras.ops.any(keep, axis=1)
        return keras.ops.where(nonempty, pooled, keras.ops.zeros_like(pooled))

    def _combined(self, u, v):
        if self.symmetric_pairs:
            return keras.ops.concatenate([u + v, keras.ops.abs(u - v), u * v], -1)
        return keras.ops.concatenate([u, v, keras.ops.abs(u - v), u * v], -1)

    def compute_output_shape(self, input_shape):
        size = 2 * self.lstm_units
        if len(input_shape) == 2 and input_shape[-1] == 2:
            size *= 3 if self.symmetric_pairs else 4
        return (input_shape[0], size)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=list(self.vocabulary),
            embedding_dim=self.embedding_dim,
            lstm_units=self.lstm_units,
            max_length=self.max_length,
            symmetric_pairs=self.symmetric_pairs,
            trainable_embeddings=self.trainable_embeddings,
            dropout=self.dropout,
        )
        return config


def _with_missing_rows(vectors, found, seed):
    """Padding and `[UNK]` rows (zero) in front; random rows for words GloVe
    lacks, with the standard deviation of the found vectors."""
    scale = float(vectors[found].std()) if found.any() else 0.1
    rng = np.random.default_rng(seed)
    random_rows = rng.normal(0.0, scale, size=vectors.shape).astype("float32")
    rows = np.where(found[:, None], vectors, random_rows)
    return np.concatenate([np.zeros((2, vectors.shape[1]), "float32"), rows])


def _checked_embeddings(embeddings, rows, dim):
    if embeddings is None:
        return None
    embeddings = np.asarray(embeddings, dtype="float32")
    if embeddings.shape != (rows, dim):
        raise ValueError(
            f"embeddings must have shape (len(vocabulary) + 2, embedding_dim) = "
            f"({rows}, {dim}), got {embeddings.shape}."
        )
    return embeddings
