"""The optimizer state that belongs to one model variable, and resetting it.

Keras 3 optimizers keep their per-variable state ("slots": SGD's
`momentums`, Adam's `_momentums` / `_velocities`, ...) as lists aligned with
the optimizer's trainable variables. There is no public accessor: finding
them and a variable's position in them is private Keras, in
`tf_lottery._keras_compat` (`optimizer_slot_lists`,
`optimizer_variable_index`). Factored slots (Adafactor) do not have the
variable's shape and are not reset.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery import _keras_compat


def _base(optimizer):
    inner = getattr(optimizer, "inner_optimizer", None)
    return _base(inner) if inner is not None else optimizer


def slot_lists(optimizer) -> dict[str, list]:
    """`{attribute: [slot or None per trainable variable]}` of a built optimizer."""
    return _keras_compat.optimizer_slot_lists(_base(optimizer))


def slots_for(optimizer, variable) -> list:
    """The optimizer variables holding `variable`'s state, with its shape."""
    base = _base(optimizer)
    if not base.built:
        return []
    try:
        index = _keras_compat.optimizer_variable_index(base, variable)
    except KeyError:  # a variable this optimizer does not train (frozen)
        return []
    slots = [values[index] for values in slot_lists(base).values()]
    return [s for s in slots if s is not None and tuple(s.shape) == tuple(variable.shape)]


def reset_slots(optimizer, variable, positions: np.ndarray) -> int:
    """Sets `variable`'s optimizer slots to 0 at `positions` (a boolean array).

    Returns:
        The number of slot variables changed.
    """
    positions = np.asarray(positions, dtype=bool)
    if not positions.any():
        return 0
    slots = slots_for(optimizer, variable)
    for slot in slots:
        value = np.asarray(keras.ops.convert_to_numpy(slot.value))
        slot.assign(np.where(positions, np.zeros((), value.dtype), value))
    return len(slots)
