"""`AdamL2` against Keras' Adam fed the gradient plus the L2 term, and the
trainer's step decay of the learning rate."""

import keras
import numpy as np
import pytest

from keras_ssr.optimizers.adam_l2 import AdamL2
from trainers.cli import parse_args


@pytest.mark.parametrize("l2", [0.0, 0.1, 1.0])
def test_adam_l2_is_adam_on_the_gradient_plus_l2_w(float64, l2):
    """torch's coupled weight decay: Adam's moments see grad + l2 * w."""
    w0 = np.array([1.0, -2.0, 0.5])

    def grad(w):
        return np.array([0.3, -0.1, 0.7]) * w + 0.2

    coupled, plain = keras.Variable(w0), keras.Variable(w0)
    adam_l2, adam = AdamL2(0.05, l2=l2), keras.optimizers.Adam(0.05)
    for _ in range(4):
        adam_l2.apply([keras.ops.convert_to_tensor(grad(coupled.numpy()))], [coupled])
        by_hand = grad(plain.numpy()) + l2 * plain.numpy()
        adam.apply([keras.ops.convert_to_tensor(by_hand)], [plain])
    np.testing.assert_allclose(coupled.numpy(), plain.numpy(), rtol=1e-10)
    if l2:  # and the penalty changed the trajectory
        reference = keras.Variable(w0)
        other = keras.optimizers.Adam(0.05)
        for _ in range(4):
            g = keras.ops.convert_to_tensor(grad(reference.numpy()))
            other.apply([g], [reference])
        assert not np.allclose(coupled.numpy(), reference.numpy())


def test_adam_l2_round_trips_and_refuses_negative_l2():
    optimizer = AdamL2(0.01, l2=0.2)
    assert AdamL2.from_config(optimizer.get_config()).l2 == 0.2
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        AdamL2(0.01, l2=-1.0)


def test_trainer_step_decay_and_weight_decay():
    config = parse_args(
        ["--weight-decay", "1e-3", "--lr-decay-epochs", "10", "--learning-rate", "1e-2"]
    )
    optimizer = config.training.optimizer(steps_per_epoch=5)
    assert isinstance(optimizer, AdamL2) and optimizer.l2 == 1e-3
    rates = []
    for step in (0, 49, 50, 100):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    np.testing.assert_allclose(rates, [1e-2, 1e-2, 1e-3, 1e-4], rtol=1e-6)
    with pytest.raises(SystemExit):
        parse_args(["--lr-decay-factor", "0"])
