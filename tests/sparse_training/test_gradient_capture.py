"""The captured gradient is the dense gradient of the training step's own batch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, mlp, toy_data, two_replica_strategy
from tf_lottery.pruning import distributions as sd
from tf_lottery.sparse_training.gradient_capture import TrainBatchGradients

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _model(**compile_kwargs):
    model = tfl.prunable(mlp(hidden=(16,)))
    sd.prune_to_distribution(model, 0.8, "erk", seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=LOSS, **compile_kwargs)
    model.optimizer.build(model.trainable_variables)
    return model


def _weights(model):
    return [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]


def _hand_gradient(model, x, y):
    """The gradient of an unmasked copy: plain Keras layers holding the same values."""
    plain = mlp(hidden=(16,))
    plain.set_weights([keras.ops.convert_to_numpy(v) for v in tfl.strip(model).weights])
    kernels = [layer.kernel for layer in plain.layers]
    with tf.GradientTape() as tape:
        loss = LOSS(y, plain(x))
    return [g.numpy() for g in tape.gradient(loss, kernels)]


class TestTrainBatchGradients(TestCase):
    @pytest.mark.parametrize(
        "compile_kwargs",
        [
            {"run_eagerly": True},
            {"jit_compile": False},
            {"jit_compile": True},
            {"jit_compile": True, "steps_per_execution": 2},
        ],
        ids=["eager", "graph", "jit", "jit_spe2"],
    )
    def test_equals_the_dense_gradient_of_the_same_batch(self, compile_kwargs):
        x, y = toy_data(64)
        model = _model(**compile_kwargs)
        capture = TrainBatchGradients(model, _weights(model), model.optimizer.iterations)
        model.fit(x[:48], y[:48], batch_size=16, epochs=1, verbose=0, shuffle=False)  # steps 1-3
        expected = _hand_gradient(model, x[48:], y[48:])  # weights after step 3, batch of step 4
        assert all(np.count_nonzero(g == 0) < g.size // 2 for g in expected)  # dense, unlike the masked one
        capture.arm(4)
        model.fit(x[48:], y[48:], batch_size=16, epochs=1, verbose=0, shuffle=False)
        for got, want in zip(capture.take(), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        assert not any(np.any(b) for b in capture.take())  # zeroed by take()

    def test_steps_that_are_not_armed_write_nothing(self):
        x, y = toy_data(64)
        model = _model(jit_compile=True)
        capture = TrainBatchGradients(model, _weights(model), model.optimizer.iterations)
        capture.arm(9)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # steps 1-8
        assert not any(np.any(b) for b in capture.take())
        capture.release()
        capture.arm(10)
        model.make_train_function(force=True)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert not any(np.any(b) for b in capture.take())

    def test_under_mirrored_strategy_it_is_the_all_replica_gradient(self):
        x, y = toy_data(64)
        with two_replica_strategy().scope():
            model = _model()
        capture = TrainBatchGradients(model, _weights(model), model.optimizer.iterations)
        model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0, shuffle=False)
        # Keras sums the replicas' gradients of loss / 2: the gradient of the global batch's mean loss.
        expected = _hand_gradient(model, x[32:], y[32:])
        capture.arm(2)
        model.fit(x[32:], y[32:], batch_size=32, epochs=1, verbose=0, shuffle=False)
        for got, want in zip(capture.take(), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
