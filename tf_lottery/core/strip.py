"""`strip(model)`: a plain Keras model without wrappers, masks or constraints."""

from __future__ import annotations

import keras

from tf_lottery import _keras_compat
from tf_lottery.core.walk import clone_layer, is_graph_model, prune_wrappers
from tf_lottery.core.wrapper import PruneWrapper


def strip(model: keras.Model) -> keras.Model:
    """Returns a new plain Keras model with the pruned weights as exact zeros.

    The result has no `PruneWrapper`, no mask variables and no masking
    constraint; it holds copies of the weights (pruned positions `+0.0`) and
    computes the same outputs as `model`. The input model is not changed.

    Sequential and functional models are rebuilt from their graph. A
    subclassed model is rebuilt with `type(model).from_config(get_config())`,
    so it must implement `get_config()` for its constructor arguments.

    Args:
        model: A model returned by `tf_lottery.core.prunable` (or holding
            `PruneWrapper` layers).

    Returns:
        A new `keras.Model`, ready for `save()` or `export()`.

    Example:

    ```python
    plain = tfl.strip(model)
    plain.save("ticket.keras")
    ```
    """
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "Invalid value for argument `model`: expected a Keras model. "
            f"Received: model={model!r} of type {type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' is not built. "
            "Call it on an input (or train it) before stripping."
        )
    for wrapper in prune_wrappers(model):
        wrapper.apply_masks()
    return _strip(model)


def _strip(model):
    if isinstance(model, PruneWrapper):
        return clone_layer(model.layer)
    if is_graph_model(model) and _keras_compat.graph_is_cloneable(model):
        return keras.models.clone_model(model, clone_function=_strip_one)
    # Subclassed models, and functional subclasses with a constructor of their
    # own (keras_hub), rebuild from their config (plain layers) with the values.
    return clone_layer(model)


def _strip_one(layer):
    if not isinstance(layer, keras.layers.Layer):
        # A raw op in a functional graph (`h + x`, `keras.ops.relu`, the
        # `NotEqual` of an `Embedding(mask_zero=True)`): stateless, reused as
        # is, as `prunable` does.
        return layer
    if isinstance(layer, PruneWrapper):
        return clone_layer(layer.layer)
    if is_graph_model(layer):
        return _strip(layer)
    return clone_layer(layer)
