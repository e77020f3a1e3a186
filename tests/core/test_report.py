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
