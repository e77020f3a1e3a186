"""The optimizer state that belongs to one model variable, and resetting it.

Keras 3 optimizers keep their per-variable state ("slots": SGD's
`momentums`, Adam's `_momentums` / `_velocities`, Adamax's `_m` / `_u`,
Adagrad's `_accumulators`, ...) as lists aligned with the optimizer's
trainable variables, built by `add_optimizer_variables`. There is no public
accessor, so the slots are found as every list attribute of that length whose
items are variables; `optimizer._get_variable_index(variable)` gives the
position. Checked on Keras 3.15 with SGD (momentum), Adam (amsgrad), AdamW,
Nadam, Adamax, RMSprop, Adagrad, Lion and `LossScaleOptimizer`. Factored
slots (Adafactor) do not have the variable's shape and are not reset.
"""

from __future__ import annotations

import keras
import numpy as np


def _base(optimizer):
    inner = getattr(optimizer, "inner_optimizer", None)
    return _base(inner) if inner is not None else optimizer


def slot_lists(optimizer) -> dict[str, list]:
    """`{attribute: [slot or None per trainable variable]}` of a built optimizer."""
    optimizer = _base(optimizer)
    count = len(getattr(optimizer, "_trainable_variables", []))
    found = {}
    for name, value in vars(optimizer).items():
        if name.startswith("_trainable_variables") or not isinstance(value, (list, tuple)):
            continue
        if count and len(value) == count and any(v is not None for v in value):
            if all(v is None or isinstance(v, keras.Variable) for v in value):
                found[name] = list(value)
    return found


def slots_for(optimizer, variable) -> list:
    """The optimizer variables holding `variable`'s state, with its shape."""
    base = _base(optimizer)
    if not base.built:
        return []
    index = base._get_variable_index(variable)
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
