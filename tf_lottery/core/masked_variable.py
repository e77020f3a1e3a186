"""Binds a boolean mask to a Keras variable so that every write honours it.

Why this design: Keras 3 writes a variable's value through
`Variable.assign()` -> `Variable._direct_assign()` in `set_weights`,
`load_weights`, `.keras` loading and our own rewinding, and after each
optimizer step it runs `variable.assign(variable.constraint(variable))` inside
the compiled train step (also under `jit_compile`, `steps_per_execution` and
`tf.distribute`). Binding the mask at `_direct_assign` therefore makes pruned
positions exactly `+0.0` after *every* write with one masking op per step and
no per-batch Python. That hook is private Keras, so it lives in
`tf_lottery._keras_compat` (`mask_writes`); this module keeps the checks and
the constraint. The optimizer's own update writes the underlying
`tf.Variable` directly; the trigger constraint below routes the result back
through the masked assignment before the step ends.
"""

from __future__ import annotations

import keras

from tf_lottery import _keras_compat


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
        variable.constraint = MaskAfterUpdate(variable.constraint)
    _keras_compat.mask_writes(variable, mask)
    if _keras_compat.is_initialized(variable):
        variable.assign(variable.value)


def is_masked(variable: keras.Variable) -> bool:
    """Whether `bind_mask` has been applied to `variable`."""
    return _keras_compat.has_masked_writes(variable)
