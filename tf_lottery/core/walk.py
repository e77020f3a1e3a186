"""Finding wrappers in a model and copying layers with their weights."""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.wrapper import PruneWrapper


def is_graph_model(layer) -> bool:
    """True for Sequential and functional models (whose graph can be cloned)."""
    return isinstance(layer, keras.Sequential) or _keras_compat.is_functional(layer)


def iter_layers(layer: keras.layers.Layer):
    """Yields every sub-layer of `layer` once, depth first, in tracking order.

    Does not descend into a `PruneWrapper` (its inner layer is not yielded).
    """
    seen = set()

    def visit(current):
        for child in _keras_compat.child_layers(current):
            if id(child) in seen:
                continue
            seen.add(id(child))
            yield child
            if not isinstance(child, PruneWrapper):
                yield from visit(child)

    yield from visit(layer)


def pruning_target(model: keras.layers.Layer) -> keras.layers.Layer:
    """The part of `model` that pruning, rewinding and tickets refer to.

    A model may define `lottery_target()` returning a sub-model: a
    distillation model returns its student, so that the frozen teacher is
    neither pruned nor rewound. Otherwise the model itself.
    """
    target = getattr(model, "lottery_target", None)
    return target() if callable(target) else model


def prune_wrappers(model: keras.layers.Layer) -> list[PruneWrapper]:
    """Every `PruneWrapper` inside `model` (nested models included), once each.

    Respects `lottery_target()` (see `pruning_target`).
    """
    model = pruning_target(model)
    if isinstance(model, PruneWrapper):
        return [model]
    return [layer for layer in iter_layers(model) if isinstance(layer, PruneWrapper)]


def _wrappers_of(model) -> list[PruneWrapper]:
    return list(model) if isinstance(model, (list, tuple)) else prune_wrappers(model)


def get_masks(model) -> list[np.ndarray]:
    """Every mask of `model`, as one flat list of boolean arrays in `prune_wrappers` order.

    Args:
        model: A model (or layer) with `PruneWrapper`s, or a list of wrappers
            (e.g. `prune_wrappers(model)`, when the caller holds it already).

    Example:

    ```python
    masks = tfl.get_masks(model)  # one array per pruned weight
    tfl.set_masks(model, [np.ones_like(m) for m in masks])  # dense again
    ```
    """
    return [m for wrapper in _wrappers_of(model) for m in wrapper.get_masks()]


def set_masks(model, masks) -> None:
    """Sets every mask of `model` from one flat list in `prune_wrappers` order.

    The inverse of `get_masks`. Each wrapper zeroes its newly pruned weights
    and their optimizer slots (`PruneWrapper.set_masks`). The whole list is
    checked (count and shapes) before any mask changes.

    Args:
        model: A model (or layer) with `PruneWrapper`s, or a list of wrappers.
        masks: Sequence of arrays, one per pruned weight, cast to bool.

    Raises:
        ValueError: `masks` has another number of arrays, or another shape,
            than the model's pruned weights; no mask is changed then.
    """
    wrappers = _wrappers_of(model)
    masks = [np.asarray(m, dtype=bool) for m in masks]
    expected = [tuple(m.shape) for wrapper in wrappers for m in wrapper.masks]
    received = [tuple(m.shape) for m in masks]
    if received != expected:
        raise ValueError(
            f"Invalid value for argument `masks`: expected {len(expected)} arrays with shapes {expected} "
            f"(one per pruned weight, in `prune_wrappers` order). Received {len(received)} with shapes "
            f"{received}. Take them from `get_masks` of a model of the same architecture."
        )
    position = 0
    for wrapper in wrappers:
        count = len(wrapper.masks)
        wrapper.set_masks(masks[position : position + count])
        position += count


def dense_masks(model) -> list[np.ndarray]:
    """All-True masks shaped like `get_masks(model)`."""
    return [np.ones(tuple(m.shape), bool) for wrapper in _wrappers_of(model) for m in wrapper.masks]


def mask_variable_ids(model: keras.layers.Layer) -> set[int]:
    return {id(mask) for wrapper in prune_wrappers(model) for mask in wrapper.masks}


def model_variables(model: keras.layers.Layer) -> list:
    """All variables of `model`'s pruning target except the masks, in order."""
    model = pruning_target(model)
    masks = mask_variable_ids(model)
    return [v for v in model.weights if id(v) not in masks]


def copy_values(source: keras.layers.Layer, target: keras.layers.Layer) -> None:
    """Copies `source`'s non-mask variable values into `target`'s, in order."""
    src = model_variables(source)
    dst = model_variables(target)
    if len(src) != len(dst):
        raise ValueError(
            f"Cannot copy weights from '{source.name}' to '{target.name}': "
            f"{len(src)} variables vs {len(dst)}. The layer's `get_config()` "
            "must rebuild the same variables."
        )
    for s, d in zip(src, dst):
        if tuple(s.shape) != tuple(d.shape):
            raise ValueError(
                f"Cannot copy '{s.path}' {tuple(s.shape)} into '{d.path}' {tuple(d.shape)}: shapes differ."
            )
        d.assign(s.value)


def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh copy of `layer` from its config, built and holding its values."""
    try:
        config = layer.get_config()
        copy = layer.__class__.from_config(config)
    except (NotImplementedError, TypeError) as error:
        raise ValueError(
            f"Layer '{layer.name}' of type {type(layer).__name__} cannot be "
            "copied from its config. Implement `get_config()` so that "
            "`from_config(get_config())` rebuilds it. "
            f"Original error: {error}"
        ) from error
    if layer.built:
        build_config = layer.get_build_config()
        # Some layers build themselves from their config (keras_hub's
        # TransformerDecoder keeps its build shapes in it); building them
        # again would trip Keras' lock on a built layer.
        if build_config and not copy.built:
            copy.build_from_config(build_config)
        # Checks that the rebuilt layer has the same variables, then fills them.
        copy_values(layer, copy)
        # A subclassed model rebuilt by running it on its build shapes holds
        # its variables but is not marked built; Keras then refuses to trace it.
        copy.built = True
    return copy
