import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.data.streams import make_eval_stream, make_train_stream, steps_per_epoch
from keras_ssr.data.tabular_views import TabularViews


def _stream(**kwargs):
    x_l = np.arange(10, dtype="float32").reshape(10, 1) * np.ones((1, 3), "float32")
    y_l = np.arange(10, dtype="float32")
    x_u = 100 + np.arange(40, dtype="float32").reshape(40, 1) * np.ones(
        (1, 3), "float32"
    )
    views = TabularViews(np.zeros(3), np.ones(3), weak_noise=0.0, strong_noise=0.5)
    return make_train_stream((x_l, y_l), x_u, views, 4, 16, **kwargs)


def test_stream_shapes():
    batch = next(iter(_stream()))
    assert batch["labeled"][0].shape == (4, 3) and batch["labeled"][1].shape == (4,)
    assert batch["unlabeled"][0].shape == (16, 3) and batch["unlabeled"][1].shape == (
        16,
        3,
    )
    assert batch["holdout"][0].shape == (4, 3)
    assert "unlabeled_targets" not in batch


def test_streams_repeat_independently_and_holdout_is_an_independent_sampler():
    batches = list(_stream().take(30))  # 30 steps >> 10 labeled / 4 per batch
    labeled = np.stack([b["labeled"][1].numpy() for b in batches])
    holdout = np.stack([b["holdout"][1].numpy() for b in batches])
    assert not np.array_equal(labeled, holdout)
    # Each pass over the labeled set (drop_remainder) draws labeled rows only.
    assert set(labeled.ravel()) <= set(range(10))
    # Labels stay attached to their features in both streams.
    for b in batches[:5]:
        np.testing.assert_array_equal(b["labeled"][0][:, 0], b["labeled"][1])
        np.testing.assert_array_equal(b["holdout"][0][:, 0], b["holdout"][1])


def test_views_weak_equals_input_without_noise_and_strong_differs():
    batch = next(iter(_stream()))
    weak, strong = batch["unlabeled"]
    assert np.all(weak.numpy() >= 100)  # unlabeled rows, weak noise 0
    assert not np.allclose(weak, strong)


def test_stream_is_deterministic_per_seed():
    a = next(iter(_stream(seed=5)))
    b = next(iter(_stream(seed=5)))
    c = next(iter(_stream(seed=6)))
    np.testing.assert_array_equal(a["unlabeled"][1], b["unlabeled"][1])
    assert not np.array_equal(a["unlabeled"][1], c["unlabeled"][1])


def test_benchmark_mode_carries_unlabeled_targets_aligned_with_views():
    x_u = np.arange(20, dtype="float32").reshape(20, 1)
    views = TabularViews(np.zeros(1), np.ones(1), weak_noise=0.0, strong_noise=0.0)
    stream = make_train_stream(
        (x_u[:4], np.zeros(4, "float32")), x_u, views, 2, 5, unlabeled_y=2 * x_u[:, 0]
    )
    batch = next(iter(stream))
    np.testing.assert_array_equal(
        2 * batch["unlabeled"][0][:, 0], batch["unlabeled_targets"]
    )


def test_strong_dropout_replaces_features_by_their_mean():
    views = TabularViews(
        np.full(4, 7.0), np.ones(4), weak_noise=0, strong_noise=0, strong_dropout=0.5
    )
    _, strong = views(tf.zeros((200, 4)), tf.constant([1, 2], "int64"))
    dropped = np.mean(strong.numpy() == 7.0)
    assert 0.4 < dropped < 0.6 and set(np.unique(strong.numpy())) == {0.0, 7.0}


def test_steps_per_epoch_and_eval_stream():
    assert steps_per_epoch(100, 1000, 64, 256) == 4
    assert steps_per_epoch(1000, 0, 64, 256) == 16
    batches = list(make_eval_stream(np.zeros((5, 2)), np.zeros(5), batch_size=2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]


def test_unlabeled_stream_shuffles_over_the_whole_set():
    # Regression: the shuffle buffer was the number of features, not of rows,
    # so early batches came from the first rows only.
    first = next(iter(_stream(seed=0)))["unlabeled"][0].numpy()[:, 0]
    assert first.max() >= 130  # some row from the last quarter (rows 130-139)


def test_teacher_predictions_travel_with_their_rows():
    x_l = np.arange(8, dtype="float32").reshape(8, 1)
    x_u = 100 + np.arange(24, dtype="float32").reshape(24, 1)
    views = TabularViews(np.zeros(1), np.ones(1), 0.0, 0.0, 0.0)
    stream = make_train_stream(
        (x_l, x_l[:, 0]), x_u, views, 4, 8, teacher=(-x_l[:, 0], -x_u[:, 0])
    )
    for batch in stream.take(5):
        yhat_l, yhat_u = batch["teacher"]
        np.testing.assert_array_equal(yhat_l, -batch["labeled"][0][:, 0])
        np.testing.assert_array_equal(yhat_u, -batch["unlabeled"][0][:, 0])
    with pytest.raises(ValueError, match="teacher predictions must match"):
        make_train_stream((x_l, x_l[:, 0]), x_u, views, 4, 8, teacher=(x_l, x_l))


def test_labeled_augment_sees_labeled_batches_and_keeps_labels_aligned():
    calls = []

    def augment(x, seed):
        calls.append(seed.shape)
        return x + 1000.0

    batch = next(iter(_stream(labeled_augment=augment)))
    x_l, y_l = batch["labeled"]
    np.testing.assert_array_equal(x_l[:, 0], y_l + 1000.0)
    np.testing.assert_array_equal(batch["holdout"][0][:, 0], batch["holdout"][1])
    assert calls == [(2,)]


def test_uint8_pixels_and_strings_keep_their_dtype():
    images = np.arange(8 * 4, dtype="uint8").reshape(8, 2, 2, 1)
    texts = np.array([f"text {i}" for i in range(8)], dtype=object)
    for x, dtype in ((images, tf.uint8), (texts, tf.string)):
        stream = make_train_stream(
            (x, np.arange(8, dtype="float32")), x, lambda b, s: (b, b), 4, 4
        )
        batch = next(iter(stream))
        assert batch["labeled"][0].dtype == dtype
        assert batch["unlabeled"][1].dtype == dtype
    x, _ = next(iter(make_eval_stream(texts, np.zeros(8))))
    assert x.dtype == tf.string
