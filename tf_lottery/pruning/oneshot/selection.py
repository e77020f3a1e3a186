"""Choosing the lowest scores: per output unit, per whole weight, or N in every M inputs.

Scores are `(inputs, outputs)` matrices (see `linear_view`). A position the
old mask already prunes scores `-inf`, so it is chosen first and stays pruned
(masks only shrink). Ties go to the lower position (stable sort), so the
result never depends on the platform's sort.
"""

from __future__ import annotations

import numpy as np

from tf_lottery.pruning.structure import NMStructure


def _lowest(scores: np.ndarray, count: int, axis: int) -> np.ndarray:
    """True at the `count` lowest entries along `axis` (stable)."""
    order = np.argsort(scores, axis=axis, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.expand_dims(np.arange(scores.shape[axis]), 1 - axis), axis=axis)
    return ranks < count


def with_old_mask(scores: np.ndarray, alive: np.ndarray) -> np.ndarray:
    return np.where(alive, scores.astype(np.float64), -np.inf)


def per_output(scores: np.ndarray, alive: np.ndarray, sparsity: float) -> np.ndarray:
    """Pruned positions: `int(inputs * sparsity)` lowest of every output unit (a column)."""
    count = int(scores.shape[0] * sparsity)
    return _lowest(with_old_mask(scores, alive), count, axis=0) | ~alive


def whole(scores: np.ndarray, alive: np.ndarray, sparsity: float) -> np.ndarray:
    """Pruned positions: `int(size * sparsity)` lowest of the whole array (C order for ties)."""
    flat = with_old_mask(scores, alive).reshape(1, -1)
    return _lowest(flat, int(flat.size * sparsity), axis=1).reshape(scores.shape) | ~alive


def n_of_m(scores: np.ndarray, alive: np.ndarray, structure: NMStructure) -> np.ndarray:
    """Pruned positions: the `M - N` lowest of every `M` consecutive inputs of each output."""
    inputs, outputs = scores.shape
    m = structure.m
    # (groups, m, outputs) -> rows of m per (group, output)
    grouped = with_old_mask(scores, alive).reshape(inputs // m, m, outputs).transpose(0, 2, 1).reshape(-1, m)
    pruned = _lowest(grouped, m - structure.n, axis=1)
    return pruned.reshape(inputs // m, outputs, m).transpose(0, 2, 1).reshape(inputs, outputs) | ~alive
