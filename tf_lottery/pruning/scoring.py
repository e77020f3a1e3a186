"""Scores that decide which weights survive: higher score, kept longer.

A scorer is any callable `scorer(wrappers) -> list[np.ndarray]` returning one
array per pruned weight (in `PruneWrapper.pruned_weights` order across the
given wrappers), each with that weight's shape. Only the scores of weights
still alive are compared; pruned positions are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

Scorer = Callable[[Sequence], list]


def magnitude(wrappers) -> list[np.ndarray]:
    """|w|: the magnitude criterion of Frankle & Carbin (2019, arXiv:1803.03635)."""
    return [np.abs(keras.ops.convert_to_numpy(w)) for wr in wrappers for w in wr.pruned_weights]


class RandomScorer:
    """Uniform random scores: the random-pruning control.

    With `scope="layer"` each layer loses the same fraction at random; with
    `scope="global"` the random selection is over all weights at once.

    Args:
        seed: int. Seed of the NumPy generator, so controls are reproducible.
            Defaults to `0`.
    """

    def __init__(self, seed: int = 0):
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"Invalid value for argument `seed`: expected an int. Received: seed={seed!r}.")
        self.seed = int(seed)

    def __call__(self, wrappers) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return [rng.random(tuple(w.shape), dtype=np.float32) for wr in wrappers for w in wr.pruned_weights]


class TaylorScorer:
    """|w * dL/dw| on one batch: first-order Taylor importance.

    Args:
        model: The model whose loss is differentiated.
        x: Input batch.
        y: Target batch.
        loss: A Keras loss (name or callable). Defaults to the loss the
            model was compiled with.

    Reference:
        Molchanov et al., "Pruning Convolutional Neural Networks for Resource
        Efficient Inference", ICLR 2017, arXiv:1611.06440.
    """

    def __init__(self, model, x, y, loss=None):
        self.model = model
        self.x = x
        self.y = y
        self.loss = keras.losses.get(loss) if loss is not None else None

    def __call__(self, wrappers) -> list[np.ndarray]:
        loss_fn = self.loss
        if loss_fn is None:
            if getattr(self.model, "loss", None) is None:
                raise ValueError(
                    "TaylorScorer needs a loss: compile the model first or pass "
                    "`loss=` (for example 'sparse_categorical_crossentropy')."
                )
            loss_fn = keras.losses.get(self.model.loss)
        weights = [w for wr in wrappers for w in wr.pruned_weights]
        with tf.GradientTape() as tape:
            prediction = self.model(self.x, training=False)
            value = tf.reduce_mean(loss_fn(self.y, prediction))
        grads = tape.gradient(value, [w.value for w in weights])
        scores = []
        for w, g in zip(weights, grads):
            g = np.zeros(tuple(w.shape), np.float32) if g is None else np.asarray(g)
            scores.append(np.abs(np.asarray(w.value) * g))
        return scores


_BY_NAME = {"magnitude": lambda: magnitude, "random": lambda: RandomScorer(0)}


def get(scorer) -> Scorer:
    """Resolves a scorer name ('magnitude', 'random') or returns a callable."""
    if callable(scorer):
        return scorer
    if isinstance(scorer, str) and scorer in _BY_NAME:
        return _BY_NAME[scorer]()
    raise ValueError(
        "Invalid value for argument `scorer`: expected 'magnitude', 'random' "
        "or a callable `scorer(wrappers) -> list of arrays` (for example "
        f"`tfl.scoring.TaylorScorer(model, x, y)`). Received: scorer={scorer!r}."
    )
