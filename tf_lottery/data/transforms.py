"""open_lth's training-set transformations: subsampling and random labels.

Both act on the training split only and are drawn from one
`transformation_seed`, independent of the replicate, so every replicate and
every level sees the same examples and labels. As in open_lth
(`datasets/base.py`), both counts are `ceil(fraction * n)`, random labels
are applied first, and both use the same random permutation of the
examples: the first `ceil(random_labels_fraction * n)` examples of it get a
label drawn uniformly from all classes (which may equal the old one), and
subsampling keeps the first `ceil(subsample_fraction * n)`, so the examples
with random labels are the first to be kept.

Reference:
    Zhang, Bengio, Hardt, Recht & Vinyals, "Understanding deep learning
    requires rethinking generalization", ICLR 2017, arXiv:1611.03530 (random
    labels); Frankle et al., open_lth (github.com/facebookresearch/open_lth).
"""

from __future__ import annotations

import math

import numpy as np


def _count(fraction: float, n: int) -> int:
    # `fraction * n` of a float fraction can land just above an integer (0.07 * 100 = 7.000000000000001).
    return min(n, math.ceil(round(float(fraction) * n, 9)))


def _order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng([int(seed), 0]).permutation(n)


def random_labels(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """`labels` with `ceil(fraction * n)` of them redrawn uniformly from `num_classes` classes.

    Args:
        labels: Array of int class indices, one per training example.
        fraction: float in [0, 1]. Fraction of the examples relabelled.
        num_classes: int. Labels are drawn from `0 .. num_classes - 1`.
        seed: int. Chooses the examples and their new labels.

    Returns:
        A new array; the chosen examples are the first of `_order(n, seed)`.

    Example:

    ```python
    noisy = random_labels(np.zeros(10, int), 0.5, num_classes=10, seed=0)
    ```
    """
    labels = np.array(labels, copy=True)
    chosen = _order(len(labels), seed)[: _count(fraction, len(labels))]
    drawn = np.random.default_rng([int(seed), 1]).integers(0, int(num_classes), size=len(chosen))
    labels[chosen] = drawn.astype(labels.dtype)
    return labels


def subsample(n: int, fraction: float, seed: int) -> np.ndarray:
    """Indices (ascending) of the `ceil(fraction * n)` training examples kept.

    Example:

    ```python
    kept = subsample(50_000, 0.1, seed=0)  # 5,000 indices
    ```
    """
    return np.sort(_order(n, seed)[: _count(fraction, n)])


def transform_training_set(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    subsample_fraction: float = 1.0,
    random_labels_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`(x, y)` with random labels applied, then subsampled (open_lth's order).

    With the defaults, returns `(x, y)` themselves.
    """
    if random_labels_fraction:
        y = random_labels(y, random_labels_fraction, num_classes, seed)
    if subsample_fraction != 1.0:
        kept = subsample(len(y), subsample_fraction, seed)
        x, y = x[kept], y[kept]
    return x, y
