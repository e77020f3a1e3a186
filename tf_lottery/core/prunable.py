"""`prunable(model)`: wrap every prunable layer of a model in `PruneWrapper`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from tf_lottery import _keras_compat
from tf_lottery.core.prunable_layers import is_prunable_layer
from tf_lottery.core.walk import clone_layer, is_graph_model, prune_wrappers
from tf_lottery.core.wrapper import PruneWrapper

Exclude = Callable[[keras.layers.Layer], bool] | Sequence[str | type] | None


def _exclusion_predicate(exclude: Exclude) -> Callable[[keras.layers.Layer], bool]:
    if exclude is None:
        return lambda layer: False
    if callable(exclude) and not isinstance(exclude, type):
        return exclude
    if isinstance(exclude, (str, type)):
        exclude = [exclude]
    names, types = set(), []
    for item in exclude:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, type) and issubclass(item, keras.layers.Layer):
            types.append(item)
        else:
            raise ValueError(
                "Invalid value for argument `exclude`: expected layer names, "
                "Keras layer classes, or a predicate `layer -> bool`. "
                f"Received an element {item!r} of type {type(item).__name__}."
            )
    types = tuple(types)
    return lambda layer: layer.name in names or (bool(types) and isinstance(layer, types))


def prunable(model: keras.Model, exclude: Exclude = None) -> keras.Model:
    """Returns `model` with each prunable layer wrapped in a `PruneWrapper`.

    Sequential and functional models are cloned: the result is a new model
    whose layers are copies holding the same weight values, so the original
    model is left untouched. Subclassed models (and custom layers with
    sub-layers) cannot be rebuilt from a graph, so they are wrapped in place:
    their layer attributes (also inside lists and dicts) are replaced by
    wrappers and the same object is returned. Wrap a subclassed model before
    `compile()`. Nested models and shared layers are handled; a layer shared
    between two call sites gets a single wrapper and a single set of masks.

    Args:
        model: A Keras model (or layer containing sub-layers).
        exclude: Layers to leave dense: a list of layer names and/or layer
            classes, or a predicate `layer -> bool`. Defaults to `None`.

    Returns:
        The model with masks, all ones (dense) until pruned.

    Example:

    ```python
    model = tfl.prunable(keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(10, name="output"),
    ]), exclude=["output"])
    ```

    Reference:
        Frankle & Carbin, ICLR 2019, arXiv:1803.03635.
    """
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            "Invalid value for argument `model`: expected a Keras model or "
            f"layer. Received: model={model!r} of type {type(model).__name__}."
        )
    excluded = _exclusion_predicate(exclude)
    _check_strategy_scope(model)
    result = _Wrapper(excluded).wrap_model(model)
    if not prune_wrappers(result):
        raise ValueError(
            f"Model '{model.name}' has nothing to prune: no Dense, EinsumDense, "
            "Conv*, DepthwiseConv*, SeparableConv*, Embedding or "
            "MultiHeadAttention layer (or layer defining "
            "`get_prunable_weights()`) was found outside `exclude`."
        )
    return result


def _check_strategy_scope(model) -> None:
    """Refuses to mix variables of two distribution strategies in one model."""
    variables = [v for v in model.weights]
    if not variables:
        return
    current = tf.distribute.get_strategy()
    for variable in variables:
        value = variable.value
        owner = _keras_compat.variable_distribute_strategy(value)
        if owner is None and not tf.distribute.has_strategy():
            continue
        if owner is not current:
            built = "outside any" if owner is None else f"inside a {type(owner).__name__}"
            now = "inside a " + type(current).__name__ if tf.distribute.has_strategy() else "outside any"
            raise ValueError(
                f"Invalid value for argument `model`: '{model.name}' was built {built} "
                f"strategy scope, but `prunable` is called {now} strategy scope. Build the "
                "model and call `tfl.prunable` inside the same `strategy.scope()`."
            )


class _Wrapper:
    def __init__(self, excluded):
        self.excluded = excluded
        self.done: dict[int, keras.layers.Layer] = {}

    def wrap_model(self, model):
        if isinstance(model, PruneWrapper):
            return model
        if is_graph_model(model):
            return keras.models.clone_model(model, clone_function=self.clone_one)
        if is_prunable_layer(model):
            return model if self.excluded(model) else PruneWrapper(model)
        self.wrap_in_place(model)
        return model

    def clone_one(self, layer):
        if id(layer) in self.done:
            return self.done[id(layer)]
        if isinstance(layer, PruneWrapper):
            result = PruneWrapper(clone_layer(layer.layer), name=layer.name)
            result.set_masks(layer.get_masks())
        elif is_graph_model(layer):
            result = self.wrap_model(layer)
        elif is_prunable_layer(layer) and not self.excluded(layer):
            result = PruneWrapper(clone_layer(layer))
        else:
            result = clone_layer(layer)
            if _keras_compat.child_layers(result):
                self.wrap_in_place(result)
        self.done[id(layer)] = result
        return result

    def replacement(self, layer):
        if id(layer) in self.done:
            return self.done[id(layer)]
        if isinstance(layer, PruneWrapper):
            result = layer
        elif is_graph_model(layer):
            result = self.wrap_model(layer)
        elif is_prunable_layer(layer) and not self.excluded(layer):
            result = PruneWrapper(layer)
        else:
            result = layer
            if _keras_compat.child_layers(layer):
                self.wrap_in_place(layer)
        self.done[id(layer)] = result
        return result

    def wrap_in_place(self, container):
        """Replaces the sub-layer attributes of `container` by their wrappers."""
        tracker = _keras_compat.layer_tracker(container)
        for name, value in _keras_compat.instance_attributes(container):
            if isinstance(value, keras.layers.Layer):
                new = self.replacement(value)
                if new is not value:
                    self._retrack(tracker, value, new)
                    setattr(container, name, new)
            elif isinstance(value, list):
                for i, item in enumerate(list(value)):
                    if isinstance(item, keras.layers.Layer):
                        new = self.replacement(item)
                        if new is not item:
                            self._retrack(tracker, item, new)
                            value[i] = new
            elif isinstance(value, dict):
                for key, item in list(value.items()):
                    if isinstance(item, keras.layers.Layer):
                        new = self.replacement(item)
                        if new is not item:
                            self._retrack(tracker, item, new)
                            value[key] = new

    @staticmethod
    def _retrack(tracker, old, new):
        # Keeps the sub-layer's position in the tracking order (and so the
        # order of `model.weights`), and works on an already-built container
        # whose tracker is locked.
        _keras_compat.replace_tracked_layer(tracker, old, new)
