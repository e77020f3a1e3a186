"""The values that newly grown connections start from.

- `"zeros"`: 0 (the RigL paper; a grown weight then starts from its
  gradient, and leaves the function unchanged at the update).
- `"random_normal"`: drawn from `N(0, std(w))`, the standard deviation of the
  tensor's current values (pruned zeros included), as rigl's
  `get_grow_tensor(..., 'random_normal')` (`tf.math.reduce_std(weights)`).
- `"initial_value"`: the value the weight had at initialisation, before
  pruning (`snapshot_initial_values`); rigl's docstring names it, while its
  code implements `initial_dist` (a shuffle of the initial values).

Reference:
    Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020,
    arXiv:1911.11134 (appendix: initialisation of new connections).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tf_lottery.core.walk import get_masks, prune_wrappers
from tf_lottery.utils import validation

GROW_INITS = ("zeros", "random_normal", "initial_value")


def grow_values(method: str, value: np.ndarray, rng: np.random.Generator, initial=None) -> np.ndarray:
    """A tensor of `value`'s shape holding the start values for grown positions.

    Args:
        method: str. One of `GROW_INITS`.
        value: The weight's current values.
        rng: NumPy generator for `"random_normal"`.
        initial: The weight's initial values (required for `"initial_value"`).
    """
    validation.check_choice("grow_init", method, GROW_INITS)
    if method == "zeros":
        return np.zeros_like(value)
    if method == "random_normal":
        return rng.normal(0.0, float(np.std(value)), size=value.shape).astype(value.dtype)
    if initial is None or tuple(np.shape(initial)) != tuple(value.shape):
        raise ValueError(
            f"grow_init='initial_value' needs the initial values of a weight of shape {tuple(value.shape)}. "
            f"Received: {None if initial is None else tuple(np.shape(initial))}."
        )
    return np.asarray(initial, dtype=value.dtype)


def snapshot_initial_values(model) -> list[np.ndarray]:
    """Copies of every pruned weight of `model`, to pass as `initial_values`.

    Take it after `tfl.prunable(model)` and before pruning (e.g. before
    `prune_to_distribution`): afterwards the pruned positions hold 0. A
    snapshot of a model that already has pruned positions is taken, with a
    warning.

    Example:

    ```python
    model = tfl.prunable(make_model())
    initial = snapshot_initial_values(model)
    prune_to_distribution(model, 0.9, "erk")
    rigl = DynamicSparseTraining(grow_init="initial_value", initial_values=initial)
    ```
    """
    wrappers = prune_wrappers(model)
    if any(not m.all() for m in get_masks(wrappers)):
        warnings.warn(
            "snapshot_initial_values: the model is already pruned, so the pruned positions of the "
            "snapshot hold 0, not their initial values. Take the snapshot before pruning.",
            stacklevel=2,
        )
    return [np.array(keras.ops.convert_to_numpy(w.value)) for wr in wrappers for w in wr.pruned_weights]
