"""Scores that decide which weights survive: higher score, kept longer.

A scorer is any callable `scorer(wrappers) -> list[np.ndarray]` returning one
array per pruned weight (in `PruneWrapper.pruned_weights` order across the
given wrappers), each with that weight's shape. Only the scores of weights
still alive are compared; pruned positions are ignored.

`TaylorScorer` (|w * dL/dw|, the same score as SNIP) lives in
`tf_lottery.pruning.scorers.taylor` and is re-exported here as
`tfl.scoring.TaylorScorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tf_lottery.pruning.scorers.taylor import TaylorScorer
from tf_lottery.utils import validation

__all__ = ["RandomScorer", "Scorer", "TaylorScorer", "get", "magnitude", "squared_magnitude", "weight_values"]

Scorer = Callable[[Sequence], list]


def magnitude(wrappers) -> list[np.ndarray]:
    """|w|: the magnitude criterion of Frankle & Carbin (2019, arXiv:1803.03635)."""
    return [np.abs(w) for w in weight_values(wrappers)]


def squared_magnitude(wrappers) -> list[np.ndarray]:
    """w**2: summed over a block (`structure="RxC"`), it ranks blocks by their L2 norm.

    Unstructured, it ranks weights as `magnitude` does.
    """
    return [np.square(w, dtype=np.float64) for w in weight_values(wrappers)]


def weight_values(wrappers) -> list[np.ndarray]:
    """The pruned weights' values as read-only NumPy arrays, in scorer order.

    On CPU each array is a view of the tensor TensorFlow read the variable
    into, not a copy: a later write to the variable goes to a new buffer
    while the view is held (so hold it no longer than needed).
    """
    return [np.asarray(tf.convert_to_tensor(w)) for wr in wrappers for w in wr.pruned_weights]


class RandomScorer:
    """Uniform random scores: the random-pruning control.

    With `scope="layer"` each layer loses the same fraction at random; with
    `scope="global"` the random selection is over all weights at once.

    Args:
        seed: int >= 0. Seed of the NumPy generator, so controls are
            reproducible. Defaults to `0`.
    """

    def __init__(self, seed: int = 0):
        self.seed = validation.check_seed("seed", seed)

    def __call__(self, wrappers) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return [rng.random(tuple(w.shape), dtype=np.float32) for wr in wrappers for w in wr.pruned_weights]


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
