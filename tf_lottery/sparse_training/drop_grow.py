"""The drop/grow update of dynamic sparse training, and its cosine schedule.

Pure NumPy on one weight tensor: which active weights to drop (smallest
magnitude), which inactive ones to grow (largest score: the dense gradient
magnitude for RigL, a random number for SET), and how many, so that the
number of active weights never changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tf_lottery.utils import validation


def cosine_drop_fraction(step: int, t_end: int, alpha: float = 0.3) -> float:
    """`alpha / 2 * (1 + cos(pi * step / t_end))`, and 0 from `t_end` on.

    The fraction of each layer's active weights that RigL replaces at `step`.

    Args:
        step: int. Optimizer step of the update.
        t_end: int > 0. Step after which the connectivity is frozen.
        alpha: float. Initial drop fraction. Defaults to `0.3`.

    Example:

    ```python
    cosine_drop_fraction(0, 1000)     # 0.3
    cosine_drop_fraction(500, 1000)   # 0.15
    cosine_drop_fraction(1000, 1000)  # 0.0
    ```

    Reference:
        Evci et al., ICML 2020, arXiv:1911.11134, equation (1).
    """
    validation.check_int("t_end", t_end, minimum=1)
    if step >= t_end:
        return 0.0
    return alpha / 2.0 * (1.0 + math.cos(math.pi * step / t_end))


def update_count(drop_fraction: float, active: int) -> int:
    """Weights replaced in a tensor with `active` weights: `floor(drop_fraction * active)`.

    Truncated as in the reference implementation (`tf.cast(n_ones *
    drop_fraction, tf.int32)`).
    """
    return int(math.floor(drop_fraction * active + 1e-9))


@dataclass
class DropGrow:
    """The result of one drop/grow update of one tensor.

    Attributes:
        mask: The new boolean mask (same count of True as before).
        grown: Positions switched on by this update (inactive before).
        dropped: Positions switched off by this update (active before).
    """

    mask: np.ndarray
    grown: np.ndarray
    dropped: np.ndarray


def drop_grow(mask: np.ndarray, magnitude: np.ndarray, grow_score: np.ndarray, k: int) -> DropGrow:
    """Drops the `k` active entries of smallest `magnitude`, grows `k` by `grow_score`.

    Growth is chosen among every entry that is inactive once the `k` are
    dropped, so a dropped entry can be grown back in the same update; such
    an entry is neither in `grown` nor in `dropped` (it keeps its value and
    optimizer state), as in the reference implementation. Ties are broken by
    flat position (the earlier entry is dropped first, grown first).

    Args:
        mask: Boolean array: the active entries.
        magnitude: Array of the same shape: `|w|`.
        grow_score: Array of the same shape: higher grows first (`|dL/dw|`
            for RigL, uniform random numbers for SET).
        k: int. Entries to replace, `0 <= k <= mask.sum()`.

    Returns:
        A `DropGrow`; `result.mask.sum() == mask.sum()` always.
    """
    mask = np.asarray(mask, dtype=bool)
    flat = mask.ravel()
    active = np.flatnonzero(flat)
    if k < 0 or k > active.size:
        raise ValueError(f"Cannot replace {k} weights: the tensor has {active.size} active weights.")
    magnitude = np.asarray(magnitude).ravel()
    grow_score = np.asarray(grow_score).ravel()
    if magnitude.size != flat.size or grow_score.size != flat.size:
        raise ValueError(
            f"`magnitude` and `grow_score` must have the mask's {flat.size} entries. "
            f"Received {magnitude.size} and {grow_score.size}."
        )
    kept = flat.copy()
    if k:
        kept[active[np.argsort(magnitude[active], kind="stable")[:k]]] = False
    candidates = np.flatnonzero(~kept)
    new = kept.copy()
    if k:
        new[candidates[np.argsort(-grow_score[candidates], kind="stable")[:k]]] = True
    return DropGrow(
        mask=new.reshape(mask.shape),
        grown=(new & ~flat).reshape(mask.shape),
        dropped=(flat & ~new).reshape(mask.shape),
    )
