"""Start values of grown connections: zeros, rigl's random normal, the initial values."""

from __future__ import annotations

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp
from tf_lottery.pruning import distributions as sd
from tf_lottery.sparse_training import grow_init


def test_zeros_and_random_normal_scale():
    value = np.array([[0.0, 2.0], [-2.0, 0.0]], "float32")  # std over all entries, zeros included: sqrt(2)
    assert not grow_init.grow_values("zeros", value, np.random.default_rng(0)).any()
    drawn = grow_init.grow_values("random_normal", value, np.random.default_rng(0))
    expected = np.random.default_rng(0).normal(0.0, np.sqrt(2.0), size=(2, 2)).astype("float32")
    np.testing.assert_allclose(drawn, expected, rtol=1e-6)
    assert drawn.dtype == np.float32


def test_initial_value_is_returned_and_must_match_the_shape():
    value = np.zeros((2, 3), "float32")
    initial = np.arange(6, dtype="float64").reshape(2, 3)
    out = grow_init.grow_values("initial_value", value, None, initial)
    np.testing.assert_array_equal(out, initial)
    assert out.dtype == np.float32
    with pytest.raises(
        ValueError, match=r"needs the initial values of a weight of shape \(2, 3\)\. Received: \(3, 2\)"
    ):
        grow_init.grow_values("initial_value", value, None, initial.T)


def test_unknown_method_is_refused():
    with pytest.raises(
        ValueError,
        match=r"`grow_init`: expected one of \('zeros', 'random_normal', 'initial_value'\)\. Received: grow_init='ones'",
    ):
        grow_init.grow_values("ones", np.zeros(2), None)


class TestSnapshot(TestCase):
    def test_snapshot_before_pruning_is_dense_and_after_warns(self):
        model = tfl.prunable(mlp())
        snapshot = grow_init.snapshot_initial_values(model)
        assert [s.shape for s in snapshot] == [(40, 64), (64, 32), (32, 10)]
        assert all(np.count_nonzero(s) == s.size for s in snapshot)
        sd.prune_to_distribution(model, 0.8, "erk", seed=0)
        with pytest.warns(UserWarning, match="the model is already pruned"):
            grow_init.snapshot_initial_values(model)
