"""Independent NumPy implementations of Wanda and SparseGPT, written from the papers.

Layout as in the papers: `W` is `(outputs, inputs)` (a row per output unit), `X`
is `(tokens, inputs)`. SparseGPT here updates every remaining column right
after each pruned one (no lazy batching) and inverts `H` directly, so it
shares no code path with `tf_lottery.pruning.oneshot.sparsegpt`.
"""

from __future__ import annotations

import numpy as np


def _lowest_per_row(scores: np.ndarray, count: int) -> np.ndarray:
    pruned = np.zeros(scores.shape, dtype=bool)
    for r, row in enumerate(scores):
        pruned[r, np.argsort(row, kind="stable")[:count]] = True
    return pruned


def wanda(w, x, sparsity, nm=None, alive=None):
    """Pruned positions of `w` (outputs, inputs) for inputs `x` (tokens, inputs)."""
    w = np.asarray(w, np.float64)
    alive = np.ones(w.shape, bool) if alive is None else alive
    norms = np.sqrt((np.asarray(x, np.float64) ** 2).sum(axis=0))
    metric = np.where(alive, np.abs(w) * norms[None, :], -np.inf)
    if nm is None:
        return _lowest_per_row(metric, int(w.shape[1] * sparsity)) | ~alive
    n, m = nm
    pruned = np.zeros(w.shape, dtype=bool)
    for start in range(0, w.shape[1], m):
        pruned[:, start : start + m] = _lowest_per_row(metric[:, start : start + m], m - n)
    return pruned | ~alive


def sparsegpt(w, x, samples, sparsity, nm=None, blocksize=128, percdamp=0.01, alive=None):
    """`(new w, pruned positions)` for `w` (outputs, inputs) and inputs `x` (tokens, inputs)."""
    w = np.where(np.ones(np.shape(w), bool) if alive is None else alive, np.asarray(w, np.float64), 0.0)
    alive = np.ones(w.shape, bool) if alive is None else alive
    x = np.asarray(x, np.float64)
    h = 2.0 * x.T @ x / samples
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += percdamp * np.mean(np.diag(h)) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: H^-1 = U^T U
    d = np.diag(u)
    columns = w.shape[1]
    pruned = np.zeros(w.shape, dtype=bool)
    for j in range(columns):
        if nm is None and j % blocksize == 0:
            block = slice(j, min(j + blocksize, columns))
            saliency = np.where(alive[:, block], w[:, block] ** 2 / d[block] ** 2, -np.inf)
            chosen = np.zeros(saliency.size, dtype=bool)
            chosen[np.argsort(saliency.ravel(), kind="stable")[: int(saliency.size * sparsity)]] = True
            pruned[:, block] = chosen.reshape(saliency.shape) | ~alive[:, block]
        if nm is not None and j % nm[1] == 0:
            group = slice(j, j + nm[1])
            saliency = np.where(alive[:, group], w[:, group] ** 2 / d[group] ** 2, -np.inf)
            pruned[:, group] = _lowest_per_row(saliency, nm[1] - nm[0]) | ~alive[:, group]
        error = np.where(pruned[:, j], w[:, j], 0.0) / u[j, j]
        w[:, j:] -= np.outer(error, u[j, j:])
        w[pruned[:, j], j] = 0.0
    return w, pruned
