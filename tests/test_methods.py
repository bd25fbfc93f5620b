import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.mean_teacher import MeanTeacher
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.registry import get_method
from keras_ssr.methods.supervised import Supervised
from tests.helpers import compiled, linear_problem, make_batch, make_regressor

LR = 0.1


def _head_gradient_closed_form(model, batch, lam):
    """d/dW of mean((F_l W + b - y)^2) + lam * mean((F_s W + b - c)^2), c fixed,
    with F from numpy: the pseudo-label c = F_w W + b gets no gradient."""
    reg = model.regressor
    w, b = (v.numpy().astype("float64") for v in reg.head.weights)
    x_l, y_l = batch["labeled"]
    x_weak, x_strong = batch["unlabeled"]
    f_l, f_w, f_s = (
        reg.features(x).numpy().astype("float64") for x in (x_l, x_weak, x_strong)
    )
    r_l = f_l @ w + b - y_l.numpy()[:, None]
    c = f_w @ w + b
    r_s = f_s @ w + b - c
    return 2 * f_l.T @ r_l / len(f_l) + lam * 2 * f_s.T @ r_s / len(f_s)


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_pseudo_label_head_step_matches_closed_form(lam):
    x, y = linear_problem()
    model = compiled(PseudoLabel, make_regressor(), unlabeled_weight=lam)
    batch = make_batch(x, y)
    expected = _head_gradient_closed_form(model, batch, lam)
    w0 = model.regressor.head.kernel.numpy()
    model.train_step(batch)
    step = (w0 - model.regressor.head.kernel.numpy()) / LR
    np.testing.assert_allclose(step, expected, rtol=2e-4, atol=1e-6)


def test_pseudo_label_with_zero_weight_equals_supervised():
    x, y = linear_problem()
    batch = make_batch(x, y)
    weights = []
    for cls in (Supervised, PseudoLabel):
        keras.utils.set_random_seed(7)
        kwargs = {} if cls is Supervised else {"unlabeled_weight": 0.0}
        model = compiled(cls, make_regressor(), **kwargs)
        model.train_step(batch)
        weights.append(model.regressor.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("name", ["supervised", "pseudo_label", "mean_teacher"])
def test_train_step_updates_regressor_and_lowers_loss(name):
    x, y = linear_problem()
    model = compiled(
        get_method(name), make_regressor(), optimizer=keras.optimizers.Adam(1e-2)
    )
    batch = make_batch(x, y)
    before = [w.numpy().copy() for w in model.regressor.trainable_weights]
    first = model.train_step(batch)["labeled_loss"].numpy()
    for _ in range(40):
        last = model.train_step(batch)
    assert all(
        not np.allclose(b, w.numpy())
        for b, w in zip(before, model.regressor.trainable_weights, strict=True)
    )
    assert model.compute_losses(batch)["labeled_loss"].numpy() < 0.5 * first
    assert np.isfinite(last["loss"].numpy())


def test_supervised_ignores_the_unlabeled_stream():
    x, y = linear_problem()
    batch = make_batch(x, y)
    other = dict(
        batch, unlabeled=(batch["unlabeled"][0] * 0 + 5, batch["unlabeled"][1] * 3)
    )
    model = compiled(Supervised, make_regressor())
    a = model.compute_gradients(batch)[0]["regressor"]
    b = model.compute_gradients(other)[0]["regressor"]
    for ga, gb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ga, gb)


def test_mean_teacher_ema_matches_hand_computation():
    x, y = linear_problem()
    decay = 0.9
    model = compiled(MeanTeacher, make_regressor(), ema_decay=decay)
    teacher0 = [w.numpy().copy() for w in model.teacher.weights]
    student0 = [w.numpy().copy() for w in model.regressor.weights]
    for t, s in zip(teacher0, student0, strict=True):
        np.testing.assert_array_equal(t, s)  # the teacher starts as the student
    batch = make_batch(x, y)
    model.train_step(batch)
    model.train_step(batch)
    # Hand computation: t2 = d * (d * s0 + (1 - d) * s1) + (1 - d) * s2; recompute
    # by replaying the student's trajectory step by step.
    keras.utils.set_random_seed(1234)
    replay = compiled(MeanTeacher, make_regressor(), ema_decay=decay)
    for w, s in zip(replay.regressor.weights, student0, strict=True):
        w.assign(s)
    replay.teacher.set_weights(teacher0)
    expected = [t.copy() for t in teacher0]
    for _ in range(2):
        replay.optimizer.apply(
            replay.compute_gradients(batch)[0]["regressor"],
            replay.regressor.trainable_weights,
        )
        student = [w.numpy() for w in replay.regressor.weights]
        expected = [
            decay * t + (1 - decay) * s for t, s in zip(expected, student, strict=True)
        ]
        replay.imputer.update(replay.regressor)
    for w, e in zip(model.teacher.weights, expected, strict=True):
        np.testing.assert_allclose(w.numpy(), e, rtol=1e-5, atol=1e-7)
    assert model.teacher.trainable_weights == []  # the teacher is not trained


def test_mean_teacher_pseudo_labels_come_from_the_teacher():
    x, y = linear_problem()
    model = compiled(MeanTeacher, make_regressor(), ema_decay=0.5)
    model.teacher.head.bias.assign([3.0])
    x_weak = make_batch(x, y)["unlabeled"][0]
    np.testing.assert_allclose(
        model.pseudo_labels(x_weak), model.teacher.standardized(x_weak), rtol=1e-6
    )
    assert not np.allclose(
        model.pseudo_labels(x_weak), model.regressor.standardized(x_weak)
    )


def test_linear_rampup():
    model = compiled(
        PseudoLabel, make_regressor(), unlabeled_weight=2.0, rampup_steps=10
    )
    weights = []
    for step in (0, 5, 10, 20):
        model.optimizer.iterations.assign(step)
        weights.append(float(model.unlabeled_weight_now()))
    assert weights == [0.0, 1.0, 2.0, 2.0]


def test_metrics_match_numpy_in_target_units():
    x, y = linear_problem(n=300)
    y = 10 + 3 * y
    model = compiled(Supervised, make_regressor(target_mean=10.0, target_std=3.0))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    metrics = model.evaluate(ds, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0).ravel().astype("float64")
    err = pred - y
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-4)
    assert metrics["mse"] == pytest.approx(np.mean(err**2), rel=1e-4)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-4)
    r2 = 1 - np.sum(err**2) / np.sum((y - y.mean()) ** 2)
    assert metrics["r2"] == pytest.approx(r2, rel=1e-4, abs=1e-4)


def test_fit_under_mirrored_strategy_matches_one_device(two_device_strategy):
    x, y = linear_problem()
    batch = make_batch(x, y, n_l=32, n_u=64)
    ds = tf.data.Dataset.from_tensors(batch).repeat(3)
    results = []
    for strategy in (None, two_device_strategy):
        keras.utils.set_random_seed(3)
        with (strategy or tf.distribute.get_strategy()).scope():
            model = compiled(MeanTeacher, make_regressor(), ema_decay=0.5)
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        results.append(
            [w.numpy() for w in model.regressor.weights + model.teacher.weights]
        )
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_method_lists_valid_names():
    with pytest.raises(
        ValueError,
        match="Valid methods: (.*, )?fully_supervised, hpl, hpl_joint, l2i_v1, ",
    ):
        get_method("fixmatch")


# ---------- pseudo_label_mode: pseudo-labels in training or inference mode ----------


def _dropout_regressor(rate):
    from keras_ssr.models.mlp_backbone import MLPBackbone
    from keras_ssr.models.ssr_regressor import SSRRegressor

    return SSRRegressor(MLPBackbone((16,), dropout=rate))


def _labels_twice_and_by_hand(model, network, x):
    """Two pseudo-label calls, and a hand-run training-mode forward of
    `network` from the state (dropout seed included) before the first."""
    saved = [v.numpy().copy() for v in network.variables]
    first = model.pseudo_labels(x).numpy()
    second = model.pseudo_labels(x).numpy()
    for variable, value in zip(network.variables, saved, strict=True):
        variable.assign(value)
    by_hand = network.standardized(x, training=True).numpy()
    return first, second, by_hand


@pytest.mark.parametrize("cls", [PseudoLabel, MeanTeacher])
def test_pseudo_labels_in_training_mode_use_dropout(cls):
    x, y = linear_problem()
    x_weak = make_batch(x, y)["unlabeled"][0]
    model = compiled(cls, _dropout_regressor(0.5), pseudo_label_mode="training")
    network = model.teacher if cls is MeanTeacher else model.regressor
    first, second, by_hand = _labels_twice_and_by_hand(model, network, x_weak)
    assert not np.allclose(first, second)  # dropout is active
    np.testing.assert_array_equal(first, by_hand)
    no_dropout = compiled(cls, _dropout_regressor(0.0), pseudo_label_mode="training")
    network = no_dropout.teacher if cls is MeanTeacher else no_dropout.regressor
    first, second, _ = _labels_twice_and_by_hand(no_dropout, network, x_weak)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, network.standardized(x_weak).numpy())


@pytest.mark.parametrize("cls", [PseudoLabel, MeanTeacher])
def test_pseudo_labels_default_to_inference_mode_bitwise(cls):
    x, y = linear_problem()
    x_weak = make_batch(x, y)["unlabeled"][0]
    model = compiled(cls, _dropout_regressor(0.5))
    assert model.pseudo_label_mode == "inference"
    network = model.teacher if cls is MeanTeacher else model.regressor
    np.testing.assert_array_equal(
        model.pseudo_labels(x_weak).numpy(), network.standardized(x_weak).numpy()
    )


def test_pseudo_label_mode_config_and_errors():
    model = PseudoLabel(make_regressor(), pseudo_label_mode="training")
    clone = PseudoLabel.from_config(model.get_config())
    assert clone.pseudo_label_mode == "training"
    with pytest.raises(ValueError, match="pseudo_label_mode must be one of"):
        MeanTeacher(make_regressor(), pseudo_label_mode="eval")
    sections = {s.name for s in get_method("mean_teacher").cls.config_sections}
    assert "pseudo_labels" in sections


def test_ema_warmup_matches_hand_computation():
    """k-th update: decay min(1 - 1/(k+1), ema_decay); the first copies the
    student, then the teacher is the running mean until the decay caps it."""
    x, y = linear_problem()
    decay = 0.6
    model = compiled(MeanTeacher, make_regressor(), ema_decay=decay, ema_warmup=True)
    batch = make_batch(x, y)
    expected = [w.numpy().copy() for w in model.teacher.weights]
    for k in range(4):
        model.train_step(batch)
        rate = min(1 - 1 / (k + 1), decay)
        expected = [
            rate * t + (1 - rate) * s.numpy()
            for t, s in zip(expected, model.regressor.weights, strict=True)
        ]
        for w, e in zip(model.teacher.weights, expected, strict=True):
            np.testing.assert_allclose(w.numpy(), e, rtol=1e-6, atol=1e-7)
    assert float(model.imputer.updates.numpy()) == 4
    clone = MeanTeacher.from_config(model.get_config())
    assert clone.ema_warmup and clone.imputer.warmup
    assert not hasattr(compiled(MeanTeacher, make_regressor()).imputer, "updates")
