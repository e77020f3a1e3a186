"""SNIP, GraSP and SynFlow scores against closed forms; exact sparsity after pruning."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data, two_replica_strategy
from tf_lottery.pruning.scorers.batch_gradients import BatchGradients
from tf_lottery.pruning.scorers.grasp import GraSPScorer
from tf_lottery.pruning.scorers.snip import SNIPScorer
from tf_lottery.pruning.scorers.synflow import SynFlowScorer, synflow_prune


def _weights(model):
    return [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]


def _linear(inputs=6, hidden=5, outputs=3):
    init = keras.initializers.RandomNormal(seed=1)
    return tfl.prunable(
        keras.Sequential(
            [
                keras.Input((inputs,)),
                keras.layers.Dense(hidden, use_bias=False, kernel_initializer=init),
                keras.layers.Dense(outputs, use_bias=False, kernel_initializer=init),
            ]
        )
    )


def _with_batch_norm():
    return tfl.prunable(
        keras.Sequential(
            [
                keras.Input((40,)),
                keras.layers.Dense(32),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Dense(10, name="output"),
            ]
        )
    )


class TestSNIP(TestCase):
    def test_scores_are_abs_gradient_times_weight(self):
        x, y = toy_data(64)
        model = compile_classifier(tfl.prunable(mlp()))
        tfl.prune(model, target_sparsity=0.5)
        weights = _weights(model)
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
        expected = [np.abs(g.numpy() * w.numpy()) for g, w in zip(tape.gradient(loss, weights), weights)]
        scores = SNIPScorer(model, x, y)(tfl.prune_wrappers(model))
        for score, want, wrapper_mask in zip(
            scores, expected, [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        ):
            np.testing.assert_allclose(score, want, rtol=1e-5, atol=1e-8)
            assert np.all(score >= 0) and np.all(score[~wrapper_mask] == 0)

    def test_pruning_reaches_the_exact_sparsity_and_keeps_the_highest_scores(self):
        x, y = toy_data(64)
        model = compile_classifier(tfl.prunable(mlp()))
        scores = SNIPScorer(model, x, y)(tfl.prune_wrappers(model))
        result = tfl.prune(model, target_sparsity=0.8, scorer=SNIPScorer(model, x, y))
        assert result["pruned"] == int(np.floor(0.8 * result["total"] + 0.5))
        masks = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        kept = np.concatenate([s[m] for s, m in zip(scores, masks)])
        dropped = np.concatenate([s[~m] for s, m in zip(scores, masks)])
        assert kept.min() >= dropped.max()

    def test_batch_norm_statistics_are_left_unchanged(self):
        x, y = toy_data(64)
        model = compile_classifier(_with_batch_norm())
        norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        before = norm.moving_mean.numpy().copy()
        SNIPScorer(model, x, y)(tfl.prune_wrappers(model))
        np.testing.assert_array_equal(norm.moving_mean.numpy(), before)

    def test_gradient_under_mirrored_strategy_matches_one_device(self):
        x, y = toy_data(64)
        model = compile_classifier(tfl.prunable(mlp()))
        single = BatchGradients(model, _weights(model))(x, y)
        values = [v.numpy() for v in model.weights]
        with two_replica_strategy().scope():
            mirrored = compile_classifier(tfl.prunable(mlp()))
        for variable, value in zip(mirrored.weights, values):
            variable.assign(value)
        both = BatchGradients(mirrored, _weights(mirrored))(x, y)
        for a, b in zip(single, both):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


class TestGraSP(TestCase):
    def test_scores_of_a_quadratic_loss_match_the_closed_form(self):
        # One linear layer, L = mean((x W / T - y)^2) over N examples and O outputs:
        # g = 2 / (N O T) x^T (x W / T - y) and H g = 2 / (N O T^2) x^T x g.
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 6)).astype("float32")
        y = rng.normal(size=(16, 3)).astype("float32")
        model = tfl.prunable(keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, use_bias=False)]))
        w = _weights(model)[0].numpy().astype(np.float64)
        temperature, (n, o) = 2.0, y.shape
        g = 2.0 / (n * o * temperature) * x.T @ (x @ w / temperature - y)
        hg = 2.0 / (n * o * temperature**2) * x.T @ x @ g
        (score,) = GraSPScorer(model, x, y, loss="mse", temperature=temperature)(tfl.prune_wrappers(model))
        np.testing.assert_allclose(score, w * hg, rtol=1e-4, atol=1e-7)

    def test_scores_of_two_layers_match_a_double_precision_tape(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 6)).astype("float32")
        y = rng.normal(size=(16, 3)).astype("float32")
        model = _linear()
        v = [tf.constant(w.numpy().astype(np.float64)) for w in _weights(model)]
        with tf.GradientTape() as outer:
            outer.watch(v)
            with tf.GradientTape() as inner:
                inner.watch(v)
                loss = tf.reduce_mean((tf.constant(x, tf.float64) @ v[0] @ v[1] / 200.0 - y) ** 2)
            grads = inner.gradient(loss, v)
            product = tf.add_n([tf.reduce_sum(g * tf.stop_gradient(g)) for g in grads])
        hg = outer.gradient(product, v)
        scores = GraSPScorer(model, x, y, loss="mse")(tfl.prune_wrappers(model))
        for score, weight, product_part in zip(scores, v, hg):
            np.testing.assert_allclose(score, weight.numpy() * product_part.numpy(), rtol=1e-3, atol=1e-12)

    def test_pruning_reaches_the_exact_sparsity(self):
        x, y = toy_data(64)
        model = compile_classifier(tfl.prunable(mlp()))
        result = tfl.prune(model, target_sparsity=0.7, scorer=GraSPScorer(model, x, y))
        assert result["pruned"] == int(np.floor(0.7 * result["total"] + 0.5))

    def test_temperature_must_be_positive(self):
        with pytest.raises(ValueError, match="Invalid value for argument `temperature`"):
            GraSPScorer(None, None, None, temperature=0)


class TestSynFlow(TestCase):
    def test_scores_of_a_linear_network_match_the_closed_form(self):
        model = _linear()
        w1, w2 = (np.abs(w.numpy()) for w in _weights(model))
        scores = SynFlowScorer(model)(tfl.prune_wrappers(model))
        # R = 1^T |W1| |W2| 1: dR/dW1[i, j] = sum_k |W2[j, k]|, dR/dW2[j, k] = sum_i |W1[i, j]|.
        np.testing.assert_allclose(scores[0], w1 * w2.sum(axis=1)[None, :], rtol=1e-5)
        np.testing.assert_allclose(scores[1], w1.sum(axis=0)[:, None] * w2, rtol=1e-5)

    def test_every_layer_carries_the_same_total_flow(self):
        # Conservation of synaptic saliency (Tanaka et al., Theorem 2): with zero biases each layer's
        # scores sum to R.
        model = tfl.prunable(mlp())
        totals = [s.sum() for s in SynFlowScorer(model)(tfl.prune_wrappers(model))]
        np.testing.assert_allclose(totals, [totals[0]] * len(totals), rtol=1e-4)

    def test_weights_and_batch_norm_are_restored_after_scoring(self):
        model = _with_batch_norm()
        before = [v.numpy().copy() for v in model.weights]
        scores = SynFlowScorer(model)(tfl.prune_wrappers(model))
        assert all(np.all(s >= 0) for s in scores)
        for variable, value in zip(model.weights, before):
            np.testing.assert_array_equal(variable.numpy(), value)
        assert any(np.any(v < 0) for v in before)

    def test_iterative_pruning_is_exact_and_masks_only_shrink(self):
        model = tfl.prunable(mlp())
        seen = []
        scorer_call = SynFlowScorer.__call__

        def spy(self, wrappers):
            seen.append([m for wr in wrappers for m in wr.get_masks()])
            return scorer_call(self, wrappers)

        SynFlowScorer.__call__ = spy
        try:
            result = synflow_prune(model, 0.9, iterations=10)
        finally:
            SynFlowScorer.__call__ = scorer_call
        assert len(seen) == 10
        assert result["alive"] == result["total"] - int(np.floor(0.9 * result["total"] + 0.5))
        for earlier, later in zip(seen, seen[1:]):
            assert all(not np.any(b & ~a) for a, b in zip(earlier, later))
        # Round 1 of 10 reaches 1 - 0.1 ** 0.1 = 20.6% sparsity.
        assert 1 - sum(m.sum() for m in seen[1]) / result["total"] == pytest.approx(1 - 0.1**0.1, abs=1e-4)

    def test_argument_errors(self):
        model = tfl.prunable(mlp())
        with pytest.raises(ValueError, match="Invalid value for argument `iterations`"):
            synflow_prune(model, 0.9, iterations=0)
        with pytest.raises(ValueError, match="Invalid value for argument `target_sparsity`"):
            synflow_prune(model, 1.5)
