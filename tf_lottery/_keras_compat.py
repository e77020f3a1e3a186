"""Every use of private Keras and TensorFlow internals in tf_lottery, in one place.

Nothing else in the package may import `keras.src` or `tensorflow.python`, or
read an underscore attribute of a Keras or TensorFlow object
(`tests/test_keras_compat.py` checks it). Each function below says what it
does, why no public API serves, and the Keras versions whose source was
checked. "Checked" names the Keras versions whose source was read for it:
3.15.1 (installed with TensorFlow 2.21, where the tests run) and 3.12.0 (the
floor in setup.py). When Keras moves, this is the one file to read.

This is the lowest layer of the package: it imports only Keras, TensorFlow
and NumPy.
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops
from keras.src.losses import loss as keras_loss
from keras.src.models.functional import Functional
from keras.src.utils import naming

# -- layers and models --------------------------------------------------------


def flatten_layers(layer: keras.layers.Layer, include_self: bool = True, recursive: bool = True) -> list:
    """`layer` (if `include_self`) and its sub-layers, nested ones too if `recursive`.

    Why private: `Layer.layers` exists only on models and lists direct
    children; Keras' own recursive walk is `Layer._flatten_layers`.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return layer._flatten_layers(include_self=include_self, recursive=recursive)


def child_layers(layer: keras.layers.Layer) -> list:
    """The direct sub-layers `layer` tracks, in tracking order (also for plain layers).

    Why private: `Model.layers` exists only on models; a custom layer's
    sub-layers are only in `Layer._layers`.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return layer._layers


def own_variables(layer: keras.layers.Layer) -> list:
    """The variables `layer` created itself (trainable first), not its sub-layers'.

    Why private: `Layer.weights` and `Layer.variables` include the
    sub-layers' variables; only `_trainable_variables` and
    `_non_trainable_variables` say which layer owns a variable.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return layer._trainable_variables + layer._non_trainable_variables


def is_functional(model) -> bool:
    """Whether `model` is a functional model (built from `keras.Input` tensors).

    Why private: `keras.Model(inputs, outputs)` returns an instance of
    `keras.src.models.functional.Functional`, a class with no public name.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return isinstance(model, Functional)


def keras_history_operation(tensor):
    """The layer (operation) that produced the symbolic `KerasTensor` `tensor`.

    Why private: Keras records a tensor's producer only in its
    `_keras_history`; there is no public accessor.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return tensor._keras_history.operation


def to_snake_case(name: str) -> str:
    """Keras' `CamelCase` -> `snake_case`, as used for auto-generated layer names.

    Why private: matching a name Keras made up needs Keras' exact rule
    (`keras.src.utils.naming.to_snake_case`), which is not exported.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return naming.to_snake_case(name)


def input_signature(model: keras.Model):
    """The input specs Keras infers for exporting `model` (also a subclassed one).

    Why private: `keras.export.ExportArchive` needs an explicit signature;
    Keras' own inference (used by `Model.export`) is
    `keras.src.export.export_utils.get_input_signature`. Imported when called,
    as before the move.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    from keras.src.export.export_utils import get_input_signature

    return get_input_signature(model)


def instance_attributes(layer: keras.layers.Layer) -> list[tuple[str, object]]:
    """`(name, value)` of `layer`'s own attributes, less dunders and Keras' tracking state.

    Why private: replacing a sub-layer in place means reading the attributes
    that hold it; `_layers` and `_tracker` are Keras' bookkeeping of the same
    sub-layers and must be left to `replace_tracked_layer`.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return [
        (name, value)
        for name, value in list(vars(layer).items())
        if not (name.startswith("__") or name in ("_layers", "_tracker"))
    ]


def layer_tracker(layer: keras.layers.Layer):
    """The `Tracker` that records `layer`'s sub-layers and variables.

    Why private: Keras has no public way to swap a tracked sub-layer for
    another while keeping its position (and so the order of `weights`).
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return layer._tracker


def replace_tracked_layer(tracker, old: keras.layers.Layer, new: keras.layers.Layer) -> None:
    """Puts `new` where `old` is in `tracker`'s layer list (also when it is locked).

    Why private: see `layer_tracker`; `Tracker.replace_tracked_value` keeps
    the position and works on an already-built, locked container.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    if tracker.is_in_store("layers", old) and not tracker.is_in_store("layers", new):
        tracker.replace_tracked_value("layers", old, new)


@contextlib.contextmanager
def unlocked_tracker(layer: keras.layers.Layer):
    """Lets a built `layer` create variables (it is locked again on exit).

    Why private: Keras locks a layer's tracker once it is built; `add_weight`
    then refuses new variables. A wrapper that creates its masks right after
    the inner layer's first call has no public way to do so.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    layer._tracker.unlock()
    try:
        yield
    finally:
        layer._tracker.lock()


# -- losses -------------------------------------------------------------------


def scale_loss_for_distribution(value):
    """`value / num_replicas` under `tf.distribute`, as every Keras `Loss` does.

    Why private: Keras' `Loss.__call__` applies it, but a loss computed by
    hand (a `DistillationLoss`) needs the same scaling, and the function is
    not exported.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return keras_loss.scale_loss_for_distribution(value)


def unscale_loss_for_distribution(value):
    """Undoes `scale_loss_for_distribution`: the per-replica batch mean.

    Why private: Keras' own metrics trackers use it, and it is not exported.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return keras_loss.unscale_loss_for_distribution(value)


def aggregate_additional_loss(model: keras.Model, loss):
    """A regularization loss summed and scaled for `tf.distribute` the way `fit()` does.

    Why private: `Trainer.compute_loss` adds `model.losses` through
    `_aggregate_additional_loss` (cast, sum, replica scaling); an override of
    `compute_loss` must do the same to give the same gradients.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return model._aggregate_additional_loss(loss)


def has_compiled_loss(model: keras.Model) -> bool:
    """Whether `model` was compiled with a loss.

    Why private: `Model.loss` is what was passed, not whether Keras built a
    loss; `_compile_loss` is what `compute_loss` uses.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return getattr(model, "_compile_loss", None) is not None


# -- optimizers ---------------------------------------------------------------


def optimizer_trainable_variables(optimizer: keras.optimizers.Optimizer) -> list:
    """The variables `optimizer` was built for, in the order of its slots.

    Why private: `Optimizer.variables` lists the optimizer's own state, not
    the model variables it updates.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return optimizer._trainable_variables


def optimizer_variable_index(optimizer: keras.optimizers.Optimizer, variable) -> int:
    """The position of `variable` in the optimizer's per-variable slot lists.

    Why private: no public accessor maps a model variable to its slots.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return optimizer._get_variable_index(variable)


def optimizer_slot_lists(optimizer: keras.optimizers.Optimizer) -> dict[str, list]:
    """`{attribute: [slot or None per trainable variable]}` of a built (unwrapped) optimizer.

    Why private: Keras 3 optimizers keep their per-variable state as lists
    under private names (SGD's `momentums`, Adam's `_momentums` /
    `_velocities`, Adamax's `_m` / `_u`, ...), built by
    `add_optimizer_variables`, with no public accessor. They are found as
    every list attribute as long as the trainable variables whose items are
    variables. Checked: Keras 3.12.0 and 3.15.1 (TF 2.21); run on 3.15 with
    SGD (momentum), Adam (amsgrad), AdamW, Nadam, Adamax, RMSprop, Adagrad,
    Lion and `LossScaleOptimizer`.
    """
    count = len(getattr(optimizer, "_trainable_variables", []))
    found = {}
    for name, value in vars(optimizer).items():
        if name.startswith("_trainable_variables") or not isinstance(value, (list, tuple)):
            continue
        if count and len(value) == count and any(v is not None for v in value):
            if all(v is None or isinstance(v, keras.Variable) for v in value):
                found[name] = list(value)
    return found


# -- variables ----------------------------------------------------------------


def variable_distribute_strategy(value):
    """The `tf.distribute` strategy a backing `tf.Variable` was created under, or `None`.

    Why private: TensorFlow records it only as `_distribute_strategy` (a
    plain `tf.Variable` has no public `distribute_strategy`).
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return getattr(value, "_distribute_strategy", None)


def is_initialized(variable: keras.Variable) -> bool:
    """Whether `variable` holds a value (a variable created lazily may not yet).

    Why private: Keras keeps deferred initialization in `_value is None` and
    has no public test for it.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return variable._value is not None


# Masked writes. Keras 3 writes a variable's value through `Variable.assign()`
# -> `Variable._direct_assign()` (in `set_weights`, `load_weights`, `.keras`
# loading, the post-step constraint, ...). Swapping the variable's class for a
# subclass whose `_direct_assign` masks the value makes every write keep the
# pruned zeros, with one `where` op and no per-batch Python. Why private: Keras
# has no public hook on variable writes. Checked: Keras 3.12.0 and 3.15.1
# (TF 2.21), TensorFlow backend (`keras.src.backend.tensorflow.core.Variable`).
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


def mask_writes(variable: keras.Variable, mask: keras.Variable) -> None:
    """Makes every later write to `variable` keep zeros where `mask` is False.

    Swaps `variable`'s class the first time; a later call only changes the
    mask. The current value is not touched. Why private: see above.
    """
    if not has_masked_writes(variable):
        variable.__class__ = _masked_class(type(variable))
    variable._tf_lottery_mask = mask


def has_masked_writes(variable: keras.Variable) -> bool:
    """Whether `mask_writes` has been applied to `variable`."""
    return type(variable) in _MASKED_CLASSES.values()
