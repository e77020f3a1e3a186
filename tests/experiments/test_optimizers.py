"""Optimizers and schedules built from the `train` config group."""

import keras
import numpy as np
import pytest

from tests.testing import TestCase
from tf_lottery.experiments import optimizers, schema


def _train(**values):
    train = schema.defaults().train
    for key, value in values.items():
        train[key] = value
    return train


class TestOptimizers(TestCase):
    def test_step_schedule_with_warmup_follows_open_lth(self):
        train = _train(lr=0.1, schedule="step", milestones="2ep,3ep", gamma=0.1, warmup="10it")
        schedule = optimizers.learning_rate(train, steps_per_epoch=10)
        values = [float(schedule(step)) for step in (0, 5, 10, 19, 20, 29, 30, 45)]
        np.testing.assert_allclose(values, [0.0, 0.05, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-5)
        config = keras.optimizers.schedules.serialize(schedule)
        assert float(keras.optimizers.schedules.deserialize(config)(5)) == pytest.approx(0.05)

    def test_step_schedule_needs_milestones(self):
        with pytest.raises(
            ValueError, match=r"`config.train.milestones`: schedule='step' needs at least one point"
        ):
            optimizers.learning_rate(_train(schedule="step"), 10)

    def test_coupled_weight_decay_goes_through_momentum_like_pytorch(self):
        train = _train(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01)
        optimizer = optimizers.build_optimizer(train, steps_per_epoch=10)
        variable = keras.Variable(np.array([1.0, -2.0], np.float32))
        gradient = np.array([0.5, 0.5], np.float32)
        w, velocity = np.array([1.0, -2.0]), np.zeros(2)
        for _ in range(3):
            optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
            velocity = 0.9 * velocity + gradient + 0.01 * w  # torch.optim.SGD(weight_decay=0.01)
            w = w - 0.1 * velocity
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), w, rtol=1e-5)

    def test_decoupled_weight_decay_is_keras_own(self):
        train = _train(optimizer="adam", weight_decay=0.01, weight_decay_mode="decoupled")
        optimizer = optimizers.build_optimizer(train, steps_per_epoch=10)
        assert type(optimizer) is keras.optimizers.Adam and optimizer.weight_decay == 0.01

    def test_durations_convert_to_steps(self):
        assert optimizers.to_steps("3ep", 50) == 150
        assert optimizers.to_steps("500it", 50) == 500
