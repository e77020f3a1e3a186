"""`sparsity_report` counts the zeros in the weights and flags masks that did not hold."""

import json

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.walk import prune_wrappers


def _pruned():
    model = tfl.prunable(
        keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(3, name="b")]
        )
    )
    tfl.prune(model, rate=0.6, scope="layer")
    return model


class TestSparsityReport(TestCase):
    def test_counts_masks_and_values(self):
        report = tfl.sparsity_report(_pruned())
        assert report.total == 30 + 15
        assert report.alive == 12 + 6
        assert report.nonzero == report.alive  # random init: no surviving weight is exactly 0
        assert report.violations == 0 and report.measured_sparsity == pytest.approx(report.sparsity)
        assert "MASK VIOLATION" not in str(report)
        assert json.loads(report.to_json())["violations"] == 0

    def test_flags_pruned_positions_that_are_not_zero(self):
        model = _pruned()
        wrapper = prune_wrappers(model)[0]
        kernel = wrapper.pruned_weights[0]
        # Writing the backing tf.Variable bypasses Keras' `assign`, as a broken
        # mechanism would: the masks still say 60% pruned, the values do not.
        kernel.value.assign(np.ones(kernel.shape, "float32"))
        with pytest.warns(RuntimeWarning, match="MASK VIOLATION: 18 weights"):
            report = tfl.sparsity_report(model)
        assert report.sparsity == pytest.approx(27 / 45)  # from the masks
        assert report.violations == 18 and report.nonzero == 30 + 6
        assert report.measured_sparsity == pytest.approx(9 / 45)
        text = str(report)
        assert "18 pruned positions are not 0" in text and "apply_masks()" in text
        wrapper.apply_masks()
        assert tfl.sparsity_report(model).violations == 0


class TestStrippedModelReport(TestCase):
    """A stripped (or never-wrapped) model has no masks: the report counts its zeros."""

    def _ninety_percent_zero(self):
        model = tfl.prunable(
            keras.Sequential(
                [keras.Input((40,)), keras.layers.Dense(50, name="a"), keras.layers.Dense(20, name="b")]
            )
        )
        tfl.prune(model, rate=0.9, scope="layer")
        return model

    def test_reports_the_zeros_of_the_prunable_weights(self):
        plain = tfl.strip(self._ninety_percent_zero())
        report = tfl.sparsity_report(plain)
        assert report.source == "zeros"
        assert [e.name for e in report.layers] == ["a/kernel", "b/kernel"]  # biases are not prunable
        assert [e.total for e in report.layers] == [40 * 50, 50 * 20]
        for entry in report.layers:
            assert entry.sparsity == pytest.approx(0.9, abs=1e-3) and entry.alive == entry.nonzero
        assert report.sparsity == pytest.approx(0.9, abs=1e-3)
        assert report.measured_sparsity == report.sparsity and report.violations == 0
        text = str(report)
        assert "exact zeros counted" in text and "90.00%" in text and " 0.00%" not in text
        assert json.loads(report.to_json())["source"] == "zeros"

    def test_the_wrapped_and_the_stripped_model_report_the_same_rows(self):
        model = self._ninety_percent_zero()
        wrapped, plain = tfl.sparsity_report(model), tfl.sparsity_report(tfl.strip(model))
        assert wrapped.source == "masks"
        assert [(e.name, e.total, e.nonzero) for e in plain.layers] == [
            (e.name, e.total, e.nonzero) for e in wrapped.layers
        ]

    def test_a_prunable_layer_is_counted_once_not_with_its_insides(self):
        # MultiHeadAttention holds four EinsumDense layers (prunable themselves)
        # and Bidirectional two LSTMs: each weight appears once, as `prunable` masks it.
        inputs = keras.Input((5, 8))
        hidden = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
        hidden = keras.layers.Bidirectional(keras.layers.LSTM(4), name="bi")(hidden)
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))
        report = tfl.sparsity_report(model)
        wrapped = tfl.sparsity_report(tfl.prunable(model))
        assert len(report.layers) == len(wrapped.layers) == 4 + 4 + 1
        assert [e.name for e in report.layers] == [e.name for e in wrapped.layers]
        assert len({e.name for e in report.layers}) == 9


class TestParameterCounts(TestCase):
    def test_keras_counts_the_masks_as_non_trainable_params_as_the_readme_says(self):
        # docs/guide/getting_started.md "Counting parameters": summary()/count_params() include one entry per mask element.
        dense = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32), keras.layers.Dense(10)])
        assert dense.count_params() == 1002
        model = tfl.prunable(dense)
        tfl.prune(model, target_sparsity=0.5)
        assert model.count_params() == 1962  # 1,002 weights + 960 mask entries
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1002
        report = tfl.sparsity_report(model)
        assert (report.model_total, report.total, report.alive) == (1002, 960, 480)
        assert tfl.strip(model).count_params() == 1002
