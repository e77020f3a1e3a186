"""`prunable(model)`: wrap every prunable layer of a model in `PruneWrapper`."""

from __future__ import annotations

import difflib
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


def _layers_by_name(model) -> dict[str, list]:
    """Every layer inside `model` (and `model` itself), at any depth, by name, in tracking order."""
    by_name: dict[str, list] = {}
    seen: set[int] = set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        by_name.setdefault(layer.name, []).append(layer)
        for child in _keras_compat.child_layers(layer):
            visit(child)

    visit(model)
    return by_name


def _check_excluded_names(model, exclude: Exclude) -> None:
    """Refuses a name in `exclude` that `prunable` would ignore: a typo, or a layer never wrapped.

    A name is useful when it names a prunable layer (or an existing
    wrapper); anything else would leave the model as if it were not given.
    """
    if exclude is None or (callable(exclude) and not isinstance(exclude, type)):
        return
    items = [exclude] if isinstance(exclude, (str, type)) else list(exclude)
    wanted = [item for item in items if isinstance(item, str)]
    if not wanted:
        return
    by_name = _layers_by_name(model)
    prunable_names = [
        name
        for name, layers in by_name.items()
        if any(is_prunable_layer(layer) or isinstance(layer, PruneWrapper) for layer in layers)
    ]
    unknown = [name for name in wanted if name not in by_name]
    unprunable = [name for name in wanted if name in by_name and name not in prunable_names]
    if not unknown and not unprunable:
        return
    problems = []
    if unknown:
        hints = [
            f"{name!r} -> {close[0]!r}"
            for name in unknown
            if (close := difflib.get_close_matches(name, list(by_name), n=1))
        ]
        problems.append(
            f"{', '.join(map(repr, unknown))} {'matches' if len(unknown) == 1 else 'match'} no layer "
            f"of '{model.name}' (names are compared exactly)"
            + (f"; did you mean {', '.join(hints)}?" if hints else ".")
        )
    if unprunable:
        kinds = ", ".join(f"{name!r} is a {type(by_name[name][0]).__name__}" for name in unprunable)
        problems.append(
            f"{kinds}, {'which is' if len(unprunable) == 1 else 'which are'} never wrapped, so "
            f"excluding {'it' if len(unprunable) == 1 else 'them'} changes nothing (to leave the "
            "layers inside a nested model or block dense, exclude them by name, by type or "
            "with a predicate)."
        )
    shown = prunable_names if len(prunable_names) <= 40 else prunable_names[:40] + ["..."]
    raise ValueError(
        f"Invalid value for argument `exclude`: {' '.join(problems)} The prunable layers "
        f"of '{model.name}' are: {shown}. Received: exclude={items!r}. Nothing was changed."
    )


def prunable(model: keras.Model, exclude: Exclude = None, *, mask_gradients: bool = True) -> keras.Model:
    """Returns `model` with each prunable layer wrapped in a `PruneWrapper`.

    Sequential and functional models are cloned: the result is a new model
    whose layers are copies holding the same weight values, so the original
    model is left untouched. Subclassed models (and custom layers with
    sub-layers) cannot be rebuilt from a graph, so they are wrapped in place:
    their layer attributes (also inside lists, tuples, dicts and sets, at any
    depth) are replaced by wrappers and the same object is returned; a
    train step it had already traced is dropped so that the next `fit()`
    retraces it with the masks. A prunable layer held anywhere else is an
    error naming it, never silently left dense. Nested models and shared layers are handled; a layer shared
    between two call sites gets a single wrapper and a single set of masks.

    Args:
        model: A Keras model (or layer containing sub-layers).
        exclude: Layers to leave dense: a list of layer names and/or layer
            classes, or a predicate `layer -> bool`. A name must be that of
            a prunable layer of the model (compared exactly); any other name
            is a `ValueError` listing the prunable layers. Defaults to `None`.
        mask_gradients: Sparse-equivalent updates (default): the gradient at
            pruned positions is zero before the optimizer sees it, so
            clipping and layer-wise optimizers see the network without the
            pruned weights. `False` gives tfmot's and open_lth's semantics
            (dense gradient, pruned weights re-zeroed after each update).
            See `PruneWrapper`.

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
    _check_excluded_names(model, exclude)
    if not isinstance(mask_gradients, bool):
        raise ValueError(
            "Invalid value for argument `mask_gradients`: expected True or False. "
            f"Received: mask_gradients={mask_gradients!r}."
        )
    _check_strategy_scope(model)
    _check_nothing_skipped(model, excluded, before_wrapping=True)
    result = _Wrapper(excluded, mask_gradients).wrap_model(model)
    _check_nothing_skipped(result, excluded, before_wrapping=False)
    if not prune_wrappers(result):
        raise ValueError(
            f"Model '{model.name}' has nothing to prune: no Dense, EinsumDense, "
            "Conv*, DepthwiseConv*, SeparableConv*, Embedding, MultiHeadAttention "
            "or recurrent layer (or layer defining "
            "`get_prunable_weights()`) was found outside `exclude`."
        )
    return result


def _check_nothing_skipped(model, excluded, before_wrapping: bool) -> None:
    """Refuses a model in which a prunable layer Keras tracks cannot be wrapped.

    Such a layer is held somewhere `prunable` cannot put a wrapper (an object
    Keras tracks but that is neither an attribute, a list, a tuple, a dict nor
    a set, nor a node of a functional graph, e.g. a custom class). Pruning
    would then silently leave it dense. Run `before_wrapping` (on the model as
    given, so that nothing is changed when it fails) and again after.
    """
    skipped, seen = [], set()

    def visit(container, path):
        reachable = _reachable_sub_layers(container) if before_wrapping else None
        for child in _keras_compat.child_layers(container):
            if isinstance(child, PruneWrapper) or excluded(child) or id(child) in seen:
                continue
            seen.add(id(child))
            here = f"{path}/{child.name}"
            if is_prunable_layer(child):
                if reachable is None or id(child) not in reachable:
                    skipped.append(here)
            else:
                visit(child, here)

    if not isinstance(model, PruneWrapper):
        visit(model, model.name)
    if skipped:
        raise ValueError(
            f"Invalid value for argument `model`: {len(skipped)} prunable layer(s) of "
            f"'{model.name}' could not be wrapped: {', '.join(skipped[:10])}. `prunable` "
            "replaces sub-layers held in attributes and in lists, tuples, dicts and sets "
            "(nested too); keep these layers in one of those, or pass their names in "
            "`exclude` to leave them dense on purpose. Nothing was changed."
        )


def _reachable_sub_layers(container) -> set[int]:
    """Ids of the sub-layers `prunable` can replace in `container` (graph nodes, attributes)."""
    found: set[int] = set()
    if is_graph_model(container):
        found.update(id(layer) for layer in container.layers)

    def collect(value, depth=0):
        if isinstance(value, keras.layers.Layer):
            found.add(id(value))
        elif depth < 32 and isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                collect(item, depth + 1)
        elif depth < 32 and isinstance(value, dict):
            for item in value.values():
                collect(item, depth + 1)

    for _, value in _keras_compat.instance_attributes(container):
        collect(value)
    return found


def _forget_traced_functions(model) -> None:
    """Makes a compiled model retrace its train/test/predict step after wrapping in place.

    A step traced before the wrappers existed has no masking op; running it
    would train the pruned weights back to non-zero values. keras_hub's
    `generate_function` is dropped too, so that `generate()` runs the wrappers.
    """
    for name in ("train_function", "test_function", "predict_function", "generate_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


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
    def __init__(self, excluded, mask_gradients=True):
        self.excluded = excluded
        self.mask_gradients = mask_gradients
        self.done: dict[int, keras.layers.Layer] = {}

    def wrap_model(self, model):
        if isinstance(model, PruneWrapper):
            return model
        if is_graph_model(model) and _keras_compat.graph_is_cloneable(model):
            return keras.models.clone_model(model, clone_function=self.clone_one)
        if is_graph_model(model):
            # A functional subclass with a constructor of its own (keras_hub's
            # backbones and tasks): wrapped in place, keeping its class.
            for layer in _keras_compat.graph_layers(model):
                new = self.replacement(layer)
                if new is not layer:
                    _keras_compat.replace_graph_operation(model, layer, new)
            self.wrap_in_place(model)
            _forget_traced_functions(model)
            return model
        if is_prunable_layer(model):
            return model if self.excluded(model) else PruneWrapper(model, mask_gradients=self.mask_gradients)
        self.wrap_in_place(model)
        _forget_traced_functions(model)
        return model

    def clone_one(self, layer):
        if not isinstance(layer, keras.layers.Layer):
            # A raw op in a functional graph (`h + x`, `keras.ops.relu`, the
            # `NotEqual` of an `Embedding(mask_zero=True)`, a `GetItem` on a
            # dict output): stateless, reused as is.
            return layer
        if id(layer) in self.done:
            return self.done[id(layer)]
        if isinstance(layer, PruneWrapper):
            result = PruneWrapper(
                clone_layer(layer.layer), mask_gradients=layer.mask_gradients, name=layer.name
            )
            result.set_masks(layer.get_masks())
        elif is_graph_model(layer):
            result = self.wrap_model(layer)
        elif is_prunable_layer(layer) and not self.excluded(layer):
            result = PruneWrapper(clone_layer(layer), mask_gradients=self.mask_gradients)
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
            result = PruneWrapper(layer, mask_gradients=self.mask_gradients)
        else:
            result = layer
            if _keras_compat.child_layers(layer):
                self.wrap_in_place(layer)
        self.done[id(layer)] = result
        return result

    def wrap_in_place(self, container):
        """Replaces the sub-layers `container` holds by their wrappers.

        Sub-layers are found in attributes and, at any depth, inside the
        containers Keras tracks: lists, tuples (named ones too), dicts and sets.
        """
        for name, value in _keras_compat.instance_attributes(container):
            new = self._replace_in(container, value, name)
            if new is not value:
                setattr(container, name, new)

    def _replace_in(self, container, value, path):
        """`value` with every layer in it replaced; lists, dicts and sets in place."""
        if isinstance(value, keras.layers.Layer):
            new = self.replacement(value)
            if new is not value:
                _keras_compat.replace_sub_layer(container, value, new)
            if "/" in path:
                # Keras 3 leaves layers held in lists, dicts and sets out of
                # `tf.train.Checkpoint` (only SavedModel sees them); a named
                # dependency per position makes the checkpoint hold them,
                # masks included.
                _keras_compat.track_for_checkpoint(container, path, new)
            return new
        if isinstance(value, list):
            for i, item in enumerate(list(value)):
                new = self._replace_in(container, item, f"{path}/{i}")
                if new is not item:
                    value[i] = new
            return value
        if isinstance(value, dict):
            for key, item in list(value.items()):
                new = self._replace_in(container, item, f"{path}/{key}")
                if new is not item:
                    value[key] = new
            return value
        if isinstance(value, (set, frozenset)):
            items = sorted(value, key=lambda item: getattr(item, "name", repr(item)))
            news = [self._replace_in(container, item, f"{path}/{i}") for i, item in enumerate(items)]
            if all(new is item for new, item in zip(items, news)):
                return value
            if isinstance(value, frozenset):
                return frozenset(news)
            value.clear()
            value.update(news)
            return value
        if isinstance(value, tuple):
            news = [self._replace_in(container, item, f"{path}/{i}") for i, item in enumerate(value)]
            if all(new is item for new, item in zip(news, value)):
                return value
            return _keras_compat.rebuild_tuple(value, news)
        return value
