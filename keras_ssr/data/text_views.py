"""`TextViews`: weak and strong (synonym-augmented) views of raw texts, in TF ops."""

import tensorflow as tf

from keras_ssr.data.text import standardize_text


class TextViews:
    """Makes the (weak, strong) views of a batch of raw texts or sentence pairs.

    The strong view is EDA's synonym replacement and random synonym insertion
    (Wei and Zou, 2019), done with TF ops only, so it runs inside `tf.data` and
    in graphs: a `tf.lookup.StaticHashTable` maps each word to its synonyms
    joined by `"|"`; every token that has synonyms is replaced by one of them,
    drawn uniformly, with probability `replace_probability`, and, with
    probability `insert_probability`, one of its synonyms (drawn
    independently) is inserted at a uniformly random position of its
    sentence. Texts are standardised first (`standardize_text`: lower case,
    punctuation as separate tokens), which is what `BiLSTMBackbone` does to
    its input anyway. The weak view is the input unchanged, or, with
    `weak_replace_probability > 0`, a light synonym replacement.
    Randomness is stateless, driven by the seed of shape `(2,)` the stream
    passes per batch: a pipeline is reproducible per seed.

    Args:
        synonyms: `dict` word -> list of synonyms (see
            `keras_ssr.data.synonyms.build_synonym_table`); words are matched
            after standardisation, so keys should be lower case.
        replace_probability: per-token replacement probability (strong view).
        insert_probability: per-token insertion probability (strong view).
        weak_replace_probability: per-token replacement probability of the
            weak view (0: the weak view is the input itself).

    Example:

    >>> views = TextViews({"good": ["fine"]}, replace_probability=1.0)
    >>> weak, strong = views(tf.constant(["A good film"]), tf.constant([1, 2]))
    >>> strong.numpy()
    array([b'a fine film'], dtype=object)

    References:
        - Wei and Zou, "EDA: Easy Data Augmentation Techniques for Boosting
          Performance on Text Classification Tasks", EMNLP 2019.
    """

    def __init__(
        self,
        synonyms,
        replace_probability=0.2,
        insert_probability=0.1,
        weak_replace_probability=0.0,
    ):
        for name, value in [
            ("replace_probability", replace_probability),
            ("insert_probability", insert_probability),
            ("weak_replace_probability", weak_replace_probability),
        ]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        self.synonyms = {str(w): [str(s) for s in syns] for w, syns in synonyms.items()}
        self.replace_probability = float(replace_probability)
        self.insert_probability = float(insert_probability)
        self.weak_replace_probability = float(weak_replace_probability)
        self.table = _synonym_hash_table(self.synonyms)

    def __call__(self, x, seed):
        """Returns `(weak, strong)` views of `x` for a `seed` of shape `(2,)`."""
        seeds = tf.random.experimental.stateless_split(seed, num=2)
        return self.weak(x, seeds[0]), self.strong(x, seeds[1])

    def weak(self, x, seed):
        """The weak view: `x` itself, or light synonym replacement."""
        if self.weak_replace_probability == 0.0:
            return tf.convert_to_tensor(x)
        return self._augmented(x, self.weak_replace_probability, 0.0, seed)

    def strong(self, x, seed):
        """The strong view: synonym replacement and insertion."""
        return self._augmented(
            x, self.replace_probability, self.insert_probability, seed
        )

    def get_config(self):
        return {
            "synonyms": self.synonyms,
            "replace_probability": self.replace_probability,
            "insert_probability": self.insert_probability,
            "weak_replace_probability": self.weak_replace_probability,
        }

    def _augmented(self, x, replace_probability, insert_probability, seed):
        """Augments every text of `x` ((b,) or pairs (b, 2)); keeps the shape."""
        x = tf.convert_to_tensor(x, dtype=tf.string)
        flat = tf.reshape(x, [-1])
        tokens = tf.strings.split(standardize_text(flat))
        seeds = tf.random.experimental.stateless_split(seed, num=5)
        words, rows = tokens.flat_values, tokens.value_rowids()
        options = self.table.lookup(words)
        # split("") gives [""]: `has` masks words without synonyms.
        has = tf.strings.length(options) > 0
        candidates = tf.strings.split(options, sep="|")
        replace = has & (_uniform(words, seeds[0]) < replace_probability)
        words = tf.where(replace, _pick(candidates, seeds[1]), words)
        insert = has & (_uniform(words, seeds[2]) < insert_probability)
        new_words = tf.boolean_mask(_pick(candidates, seeds[3]), insert)
        new_rows = tf.boolean_mask(rows, insert)
        out = _merged(tokens, words, new_words, new_rows, seeds[4])
        return tf.reshape(
            tf.strings.reduce_join(out, axis=1, separator=" "), tf.shape(x)
        )


def _synonym_hash_table(synonyms):
    # A lookup table cannot be empty: a space never matches a token.
    synonyms = synonyms or {" ": []}
    keys = tf.constant(list(synonyms), dtype=tf.string)
    values = tf.constant(["|".join(s) for s in synonyms.values()], dtype=tf.string)
    initializer = tf.lookup.KeyValueTensorInitializer(keys, values)
    return tf.lookup.StaticHashTable(initializer, default_value="")


def _uniform(like, seed):
    return tf.random.stateless_uniform(tf.shape(like, out_type=tf.int64), seed)


def _pick(candidates, seed):
    """One uniformly drawn element of every row of a ragged tensor."""
    counts = candidates.row_lengths()
    draw = _uniform(counts, seed) * tf.cast(counts, tf.float32)
    index = tf.minimum(tf.cast(draw, tf.int64), counts - 1)
    return tf.gather(candidates.flat_values, candidates.row_starts() + index)


def _merged(tokens, words, new_words, new_rows, seed):
    """`tokens` with `words` as values plus `new_words` inserted into their
    rows at uniform random slots (before, between or after the tokens).

    Sort keys: token j of row r gets `r * stride + 2 j + 1`, an insertion into
    slot s of row r gets `r * stride + 2 s`, so a stable sort interleaves them.
    """
    lengths = tokens.row_lengths()
    stride = 2 * tf.reduce_max(tf.concat([lengths, [0]], 0)) + 3
    rows = tokens.value_rowids()
    position = tf.range(tf.size(rows, out_type=tf.int64)) - tf.gather(
        tokens.row_starts(), rows
    )
    slots = tf.cast(
        _uniform(new_rows, seed)
        * tf.cast(tf.gather(lengths, new_rows) + 1, tf.float32),
        tf.int64,
    )
    slots = tf.minimum(slots, tf.gather(lengths, new_rows))
    keys = tf.concat(
        [rows * stride + 2 * position + 1, new_rows * stride + 2 * slots], 0
    )
    order = tf.argsort(keys, stable=True)
    return tf.RaggedTensor.from_value_rowids(
        tf.gather(tf.concat([words, new_words], 0), order),
        tf.gather(tf.concat([rows, new_rows], 0), order),
        nrows=tokens.nrows(),
    )
