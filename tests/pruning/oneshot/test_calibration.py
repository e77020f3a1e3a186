"""Sequential calibration: each layer sees the outputs of the pruned layers before it; failures leave the model as it was."""

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.pruning.oneshot import reference
from tests.pruning.oneshot.helpers import correlated_inputs
from tests.testing import TestCase

sparsegpt_module = importlib.import_module("tf_lottery.pruning.oneshot.sparsegpt")


def _functional():
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(16, activation="relu", name="first")(inputs)
    hidden = keras.layers.Add()([hidden, inputs])  # residual
    outputs = keras.layers.Dense(8, name="second")(hidden)
    return tfl.prunable(keras.Model(inputs, outputs))


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(16, activation="tanh")
        self.second = keras.layers.Dense(8)
        self.unused = keras.layers.Dense(8)

    def call(self, x, use_unused=True):
        h = self.first(x)
        return self.second(h) + (self.unused(h) if use_unused else 0.0)


def _subclassed(use_unused=True):
    model = _Subclassed()
    model(np.zeros((1, 16), "float32"))
    model = tfl.prunable(model)
    if not use_unused:
        model.call = lambda x, **kw: _Subclassed.call(model, x, use_unused=False)
    return model


def _state(model):
    return [
        (w.numpy().copy(), m.copy())
        for wr in tfl.prune_wrappers(model)
        for w, m in zip(wr.pruned_weights, wr.get_masks())
    ]


def _assert_same_state(before, after):
    for (w0, m0), (w1, m1) in zip(before, after):
        np.testing.assert_array_equal(w0, w1)
        np.testing.assert_array_equal(m0, m1)


class TestSequentialCalibration(TestCase):
    @pytest.mark.parametrize("kind", ["functional", "subclassed"])
    def test_each_layer_is_calibrated_on_the_pruned_layers_before_it(self, kind):
        x = correlated_inputs()
        model = _functional() if kind == "functional" else _subclassed()
        wrappers = tfl.prune_wrappers(model)
        first, second = wrappers[0], wrappers[1]
        w1, w2 = first.pruned_weights[0].numpy(), second.pruned_weights[0].numpy()
        report = tfl.oneshot.sparsegpt(model, x, 0.5, blocksize=8, batch_size=32)
        new1, pruned1 = reference.sparsegpt(w1.T, x, len(x), 0.5, blocksize=8)
        np.testing.assert_allclose(first.pruned_weights[0].numpy(), new1.T, atol=1e-4)
        # The second layer's inputs come from the pruned first layer.
        h = first.layer(x).numpy()
        h = h + x if kind == "functional" else h
        new2, pruned2 = reference.sparsegpt(w2.T, h, len(x), 0.5, blocksize=8)
        np.testing.assert_array_equal(~second.get_masks()[0], pruned2.T)
        np.testing.assert_allclose(second.pruned_weights[0].numpy(), new2.T, atol=1e-4)
        assert all(abs(v - 0.5) < 1e-9 for v in report.pruned.values())

    def test_a_layer_never_called_is_an_error_naming_it(self):
        model = _subclassed(use_unused=False)
        before = _state(model)
        with pytest.raises(
            ValueError, match=r"\['prune_dense_2'\].*were never called.*`tfl.prunable\(model, exclude"
        ):
            tfl.oneshot.wanda(model, correlated_inputs(), 0.5)
        _assert_same_state(before, _state(model))

    @pytest.mark.parametrize("failure", [ValueError, KeyboardInterrupt])
    def test_a_failure_half_way_leaves_the_model_as_it_was(self, failure, monkeypatch):
        model = _functional()
        tfl.prune(model, target_sparsity=0.2)
        before = _state(model)
        calls = []
        original = sparsegpt_module.prune_matrix

        def failing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise failure("injected")
            return original(*args, **kwargs)

        monkeypatch.setattr(sparsegpt_module, "prune_matrix", failing)
        with pytest.raises(failure, match="injected"):
            tfl.oneshot.sparsegpt(model, correlated_inputs(), 0.5)
        assert len(calls) == 2  # the first layer had been pruned (in its kernel) when it failed
        _assert_same_state(before, _state(model))

    def test_a_failure_while_committing_masks_restores_them(self, monkeypatch):
        model = _functional()
        before = _state(model)
        second = tfl.prune_wrappers(model)[1]
        monkeypatch.setattr(second, "set_masks", lambda masks: (_ for _ in ()).throw(RuntimeError("disk")))
        with pytest.raises(RuntimeError, match="disk"):
            tfl.oneshot.wanda(model, correlated_inputs(), 0.5)
        _assert_same_state(before, _state(model))

    def test_the_forward_pass_stops_after_the_layer_being_calibrated(self):
        model = _functional()
        second = tfl.prune_wrappers(model)[1].layer
        seen = []
        original = second.call

        def counting(*args, **kwargs):
            seen.append(1)
            return original(*args, **kwargs)

        second.call = counting
        tfl.oneshot.wanda(model, correlated_inputs(n=64), 0.5, batch_size=32)
        del second.call
        # 2 batches: probe (1) + the first layer's step (0: stopped before) + its own step (2).
        assert len(seen) == 3

    def test_dataset_and_verbose(self, capsys):
        x = correlated_inputs()
        model = _functional()
        start = model.get_weights()
        data = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(32)
        tfl.oneshot.wanda(model, data, 0.5, verbose=1)
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0] == "wanda: calibration block by block (2 blocks)"
        assert lines[1] == "wanda block 1/2 'prune_first': 1 step(s)"
        assert len(lines) == 5 and lines[2].startswith("wanda [1/2] prune_first:")
        from_arrays = _functional()
        from_arrays.set_weights(start)
        tfl.oneshot.wanda(from_arrays, x, 0.5, batch_size=32)
        _assert_same_state(_state(from_arrays), _state(model))
