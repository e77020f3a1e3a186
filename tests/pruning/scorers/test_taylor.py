"""TaylorScorer and SNIPScorer: one score, |w * dL/dw|, under two names."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.pruning import scoring
from tf_lottery.pruning.scorers.snip import SNIPScorer
from tf_lottery.pruning.scorers.taylor import TaylorScorer


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


def _tape_scores(model, x, y, loss_fn):
    """The former `tfl.scoring.TaylorScorer`: an eager tape, inference mode, batch-mean loss."""
    weights = [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss_fn(y, model(x, training=False)))
    grads = tape.gradient(value, [w.value for w in weights])
    return [np.abs(np.asarray(w.value) * np.asarray(g)) for w, g in zip(weights, grads)]


class TestTaylorScorer(TestCase):
    @pytest.mark.parametrize("explicit_loss", [False, True])
    def test_reproduces_the_former_gradient_tape_scores(self, explicit_loss):
        x, y = toy_data(64)
        model = compile_classifier(_with_batch_norm())
        tfl.prune(model, target_sparsity=0.5)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        expected = _tape_scores(model, x, y, loss)
        scorer = TaylorScorer(model, x, y, loss=loss if explicit_loss else None)
        for score, want in zip(scorer(tfl.prune_wrappers(model)), expected):
            np.testing.assert_allclose(score, want, rtol=1e-5, atol=1e-6)

    def test_the_compiled_objective_holds_the_regularization_an_explicit_loss_does_not(self):
        x, y = toy_data(64)
        regularized = keras.Sequential(
            [keras.Input((40,)), keras.layers.Dense(16, kernel_regularizer="l2"), keras.layers.Dense(10)]
        )
        model = compile_classifier(tfl.prunable(regularized))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        data_only = _tape_scores(model, x, y, loss)
        weights = [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        with tf.GradientTape() as tape:
            objective = model.compute_loss(x=x, y=y, y_pred=model(x, training=False), training=False)
        compiled = [np.abs(w.numpy() * g.numpy()) for w, g in zip(weights, tape.gradient(objective, weights))]
        wrappers = tfl.prune_wrappers(model)
        for score, want in zip(TaylorScorer(model, x, y, loss=loss)(wrappers), data_only):
            np.testing.assert_allclose(score, want, rtol=1e-5, atol=1e-6)
        for score, want in zip(TaylorScorer(model, x, y)(wrappers), compiled):
            np.testing.assert_allclose(score, want, rtol=1e-5, atol=1e-6)

    def test_snip_is_taylor_in_training_mode(self):
        x, y = toy_data(64)
        model = compile_classifier(_with_batch_norm())
        wrappers = tfl.prune_wrappers(model)
        snip = SNIPScorer(model, x, y)(wrappers)
        taylor = TaylorScorer(model, x, y, training=True)(wrappers)
        for a, b in zip(snip, taylor):
            np.testing.assert_array_equal(a, b)
        inference = TaylorScorer(model, x, y)(wrappers)
        # BatchNorm (batch statistics vs moving statistics) makes the two modes differ.
        assert any(not np.allclose(a, b) for a, b in zip(snip, inference))

    def test_one_class_under_both_names(self):
        assert issubclass(SNIPScorer, TaylorScorer)
        assert scoring.TaylorScorer is TaylorScorer and tfl.scoring.TaylorScorer is TaylorScorer
        assert tfl.SNIPScorer is SNIPScorer
        model = mlp()
        assert TaylorScorer(model, None, None).training is False
        assert SNIPScorer(model, None, None).training is True

    def test_the_scorer_leaves_batch_norm_statistics_unchanged(self):
        x, y = toy_data(64)
        model = compile_classifier(_with_batch_norm())
        norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        before = norm.moving_mean.numpy().copy()
        TaylorScorer(model, x, y, training=True)(tfl.prune_wrappers(model))
        np.testing.assert_array_equal(norm.moving_mean.numpy(), before)

    def test_bad_arguments_fail_in_the_constructor(self):
        with pytest.raises(
            ValueError, match=r"argument `training`: expected a bool\. Received: training='yes'\."
        ):
            TaylorScorer(mlp(), None, None, training="yes")
        with pytest.raises(ValueError, match="Could not interpret loss identifier: l3"):
            SNIPScorer(mlp(), None, None, loss="l3")

    def test_an_uncompiled_model_without_loss_is_refused(self):
        x, y = toy_data(8)
        model = tfl.prunable(mlp())
        with pytest.raises(ValueError, match=r"has no loss: compile it first or pass `loss=`"):
            TaylorScorer(model, x, y)(tfl.prune_wrappers(model))
