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

import threading
import weakref

import keras
import numpy as np
import tensorflow as tf

from tf_lottery import _keras_compat
from tf_lottery.core import optimizer_slots

# The Keras versions this mechanism is tested on (setup.py declares the same
# range; `tests/core/test_masked_variable.py` checks they agree).
TESTED_KERAS = (">=3.12.0", "<3.16")


class MaskAfterUpdate(keras.constraints.Constraint):
    """Constraint that makes Keras re-assign a masked variable after a step.

    Keras applies `variable.assign(constraint(variable))` after every optimizer
    update; the masked assignment zeroes the pruned positions. A constraint the
    variable already had is applied first and kept.

    It is also where a masked variable meets the optimizer that trains it
    (once per trace of a compiled step, every step of an eager loop): the
    optimizer is remembered, so that pruning later zeroes its slots at the
    newly pruned positions, and one that keeps an exponential moving average
    of the weights (`use_ema=True`) is refused, since Keras writes the
    average back into the weights without the mask.

    Args:
        inner: Optional `keras.constraints.Constraint` to apply before masking.
    """

    def __init__(self, inner=None):
        self.inner = inner

    def __call__(self, w):
        optimizer = _keras_compat.calling_optimizer()
        if optimizer is not None:
            _note_optimizer(w, optimizer)
        if self.inner is not None:
            return self.inner(w)
        # Keras writes what this returns back into `w`: a plain read (no gradient hook) saves ops
        # in every step of a graph without XLA.
        return _keras_compat.read_unhooked(w) if _keras_compat.has_masked_writes(w) else w

    def get_config(self):
        return {"inner": keras.constraints.serialize(self.inner) if self.inner else None}


def _note_optimizer(variable, optimizer) -> None:
    known = _keras_compat.variable_attribute(variable, "_tf_lottery_optimizers", None)
    if known is None:
        known = weakref.WeakSet()
        _keras_compat.set_variable_attribute(variable, "_tf_lottery_optimizers", known)
    if optimizer in known:
        return
    if _keras_compat.uses_ema(optimizer):
        raise ValueError(
            f"Invalid optimizer for the masked variable '{variable.path}': "
            f"{type(optimizer).__name__}(use_ema=True) writes its moving average of the "
            "weights back into them without the pruning mask, so pruned weights would "
            "come back. Use `use_ema=False` with masked (pruned) models."
        )
    known.add(optimizer)


def optimizers_of(variable) -> list:
    """The optimizers that have updated `variable` since its mask was bound (alive ones)."""
    known = _keras_compat.variable_attribute(variable, "_tf_lottery_optimizers", None)
    return list(known) if known is not None else []


def bind_mask(variable: keras.Variable, mask: keras.Variable, mask_gradients: bool = True) -> None:
    """Makes every later write to `variable` keep zeros where `mask` is False.

    Also zeroes the pruned positions of the current value right away. With
    `mask_gradients`, the gradient of the pruned positions is zero before any
    optimizer sees it (see `PruneWrapper`). The first call in a process checks
    that the mechanism holds on the installed Keras (`self_check`).
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
    self_check()
    if not is_masked(variable):
        variable.constraint = MaskAfterUpdate(variable.constraint)
    _keras_compat.mask_writes(variable, mask, mask_gradients)
    if _keras_compat.is_initialized(variable):
        rezero(variable)


def rezero(variable: keras.Variable, changed=None) -> None:
    """Writes `variable` back through its mask, at its stored precision.

    With `changed` (a boolean array of the positions whose mask changed),
    also zeroes the slots of every optimizer that has trained `variable` at
    those positions, so that momentum does not carry a pruned weight's
    history into training.
    """
    _keras_compat.write_current_value(variable)
    if changed is not None and np.any(changed):
        for optimizer in optimizers_of(variable):
            optimizer_slots.reset_slots(optimizer, variable, changed)


def dense_gradients():
    """Context in which gradients of masked variables are the dense ones.

    Scorers (SNIP, GraSP, SynFlow) and RigL's growth criterion need the
    gradient at pruned positions, which training masks by default. A
    `tf.function` traced inside the context keeps dense gradients when it is
    called again later, so trace and call such functions inside it.

    Example:

    ```python
    with dense_gradients():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        grads = tape.gradient(loss, model.trainable_weights)  # dense
    ```
    """
    return _keras_compat.dense_gradients()


def is_masked(variable: keras.Variable) -> bool:
    """Whether `bind_mask` has been applied to `variable`."""
    return _keras_compat.has_masked_writes(variable)


_CHECKED = False
_CHECK_LOCK = threading.Lock()


class MaskMechanismError(RuntimeError):
    """The installed Keras no longer keeps the pruned weights at zero."""


def self_check() -> None:
    """Checks once per process that masks hold on the installed Keras.

    The masking rests on two behaviours of Keras that are not public API
    (writes go through `Variable._direct_assign`, and `BaseOptimizer.apply`
    re-assigns every constrained variable after its update). On a scratch
    variable it checks, eagerly and inside `tf.function`: a plain `assign`,
    a real optimizer step (SGD with momentum), the zero gradient at pruned
    positions, and that the optimizer is seen by the constraint. It runs in a
    fresh thread, so that no caller's distribution strategy, function graph
    or autocast scope leaks in.

    Raises:
        MaskMechanismError: naming the Keras version and what failed.
    """
    global _CHECKED
    if _CHECKED:
        return
    with _CHECK_LOCK:
        if _CHECKED:
            return
        failures = []
        thread = threading.Thread(target=_run_checks, args=(failures,), name="tf_lottery_self_check")
        thread.start()
        thread.join()
        if failures:
            low, high = TESTED_KERAS
            raise MaskMechanismError(
                f"tf_lottery's masks do not hold on Keras {keras.__version__} "
                f"(TensorFlow {tf.__version__}): {'; '.join(failures)}. Pruned weights "
                f"would not stay at zero. tf_lottery is tested on keras{low},{high}; "
                f'install one (`pip install "keras{low},{high}"`) or report the Keras version.'
            )
        _CHECKED = True


def _run_checks(failures: list) -> None:
    try:
        _checks(failures)
    except Exception as error:  # noqa: BLE001 - reported to the caller's thread
        failures.append(f"the check itself failed with {type(error).__name__}: {error}")


def _checks(failures: list) -> None:
    pattern = np.array([[True, False], [False, True]])
    mask = keras.Variable(pattern, dtype="bool", trainable=False, name="self_check_mask")

    def scratch():
        variable = keras.Variable(np.ones((2, 2), "float32"), dtype="float32", name="self_check")
        variable.constraint = MaskAfterUpdate()
        _keras_compat.mask_writes(variable, mask, True)
        return variable

    def zeros_held(variable):
        return bool(np.all(np.asarray(variable.numpy())[~pattern] == 0.0))

    variable = scratch()
    variable.assign(np.full((2, 2), 3.0, "float32"))
    if not zeros_held(variable):
        failures.append("`Variable.assign` no longer goes through `_direct_assign`")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.multiply(variable, 2.0))
    gradient = tape.gradient(loss, variable.value)
    if gradient is None or not np.all(np.asarray(gradient)[~pattern] == 0.0):
        failures.append("the gradient of a pruned position reaches the optimizer")
    for compiled in (False, True):
        _optimizer_step(scratch(), pattern, compiled, failures)


def _optimizer_step(variable, pattern, compiled: bool, failures: list) -> None:
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.build([variable])

    def step():
        optimizer.apply([tf.ones((2, 2))], [variable])

    (tf.function(step) if compiled else step)()
    where = "inside tf.function" if compiled else "eagerly"
    if not np.all(np.asarray(variable.numpy())[~pattern] == 0.0):
        failures.append(f"an optimizer step {where} no longer re-assigns constrained variables")
    if optimizer not in optimizers_of(variable):
        failures.append(f"the constraint no longer sees the optimizer that calls it ({where})")
