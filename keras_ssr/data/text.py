"""The tokenisation shared by text models and text views: standardise, split."""

import collections

import numpy as np
import tensorflow as tf

# ASCII punctuation, split off as separate tokens (GloVe has "!", ",", "?"...).
_PUNCTUATION = r"([[:punct:]])"


def standardize_text(texts):
    """Lower-cases `texts` and splits punctuation off as separate tokens.

    The tokenisation shared by `TextViews` and `BiLSTMBackbone`: after it,
    splitting on spaces gives the tokens. Idempotent.

    Example:

    >>> standardize_text(tf.constant(["Great  movie!!"])).numpy()
    array([b'great movie ! !'], dtype=object)
    """
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 ")
    texts = tf.strings.regex_replace(texts, r"\s+", " ")
    return tf.strings.strip(texts)


def build_vocabulary(texts, max_tokens=20000, min_count=1, oov="[UNK]"):
    """The `max_tokens` most frequent standardised tokens of `texts`.

    Ties are broken alphabetically, so the vocabulary is deterministic.
    """
    flat = tf.constant(np.asarray(texts, dtype=object).reshape(-1).astype(str))
    tokens = tf.strings.split(standardize_text(flat)).flat_values.numpy()
    counts = collections.Counter(token.decode("utf-8") for token in tokens)
    counts.pop(oov.lower(), None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, count in ranked if count >= min_count][:max_tokens]
