"""Binds a boolean mask to a Keras variable so that every write honours it.

Why this design: Keras 3 writes a variable's value through
`Variable.assign()` -> `Variable._direct_assign()` in `set_weights`,
`load_weights`, `.keras` loading and our own rewinding, and after each
optimizer step it runs `variable.assign(variable.constraint(variable))` inside
the compiled train step (also under `jit_compile`, `steps_per_execution` and
`tf.distribute`). Binding the mask at `_direct_assign` therefore makes pruned
positions exactly `+0.0` after *every* write with one masking op per step and
no per-batch Python. The optimizer's own update writes the underlying
`tf.Variable` directly; the trigger constraint below routes the result back
through the masked assignment before the step ends.
"""

from __future__ import annotations

import keras
from keras import ops

_MASKED_CLASSES: dict[type, type] = {}


def _masked_class(base: type) -> type:
    """A subclass of the backend variable class whose writes are masked."""
    if base in _MASKED_CLASSES:
        return _MASKED_CLASSES[base]

    class MaskedVariable(base):
        def _direct_assign(self, value):
            mask = self._tf_lottery_mask
            value = ops.convert_to_tensor(value, dtype=self.dtype)
            super()._direct_assign(ops.where(mask, value, ops.zeros_like(value)))

    MaskedVariable.__name__ = f"Masked{base.__name__}"
    MaskedVariable.__qualname__ = MaskedVariable.__name__
    _MASKED_CLASSES[base] = MaskedVariable
    return MaskedVariable


class MaskAfterUpdate(keras.constraints.Constraint):
    """Constraint that makes Keras re-assign a masked variable after a step.

    Keras applies `variable.assign(constraint(variable))` after every optimizer
    update; the masked assignment zeroes the pruned positions. A constraint the
    variable already had is applied first and kept.

    Args:
        inner: Optional `keras.constraints.Constraint` to apply before masking.
    """

    def __init__(self, inner=None):
        self.inner = inner

    def __call__(self, w):
        return self.inner(w) if self.inner is not None else w

    def get_config(self):
        return {"inner": keras.constraints.serialize(self.inner) if self.inner else None}


def bind_mask(variable: keras.Variable, mask: keras.Variable) -> None:
    """Makes every later write to `variable` keep zeros where `mask` is False.

    Also zeroes the pruned positions of the current value right away.
    """
    if mask.dtype != "bool":
        raise ValueError(
            f"`mask` must be a boolean variable. Received dtype={mask.dtype} "
            f"for the mask of '{variable.path}'."
        )
    if tuple(mask.shape) != tuple(variable.shape):
        raise ValueError(
            f"`mask` must have the shape of '{variable.path}', "
            f"{tuple(variable.shape)}. Received shape {tuple(mask.shape)}."
        )
    if not is_masked(variable):
        variable.__class__ = _masked_class(type(variable))
        variable.constraint = MaskAfterUpdate(variable.constraint)
    variable._tf_lottery_mask = mask
    if variable._value is not None:
        variable.assign(variable.value)


def is_masked(variable: keras.Variable) -> bool:
    """Whether `bind_mask` has been applied to `variable`."""
    return type(variable) in _MASKED_CLASSES.values()


def unbind_mask(variable: keras.Variable) -> None:
    """Restores `variable` to a plain Keras variable (its value is kept)."""
    if not is_masked(variable):
        return
    variable.__class__ = type(variable).__mro__[1]
    inner = variable.constraint.inner if isinstance(variable.constraint, MaskAfterUpdate) else None
    variable.constraint = inner
    del variable._tf_lottery_mask
