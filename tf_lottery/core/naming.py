"""Unique, path-like names for a model's weights: one name per weight, used everywhere.

A weight is named by the layer names from the model down to it, then its own
name: `gpt2_backbone/transformer_layer_0/self_attention/query/kernel`. A
`PruneWrapper` is transparent (its masks are named after their weight,
`.../query/kernel_mask`), so a weight keeps its name after `prunable` and after
`strip`. The names come from the layer tree, not from `Variable.path` (which
records the name scope a variable was *built* in, and so differs between a
model called in a functional graph, a layer rebuilt by `clone_model`, and a
model loaded from a `.keras` file). They depend only on layer names, which
`.keras` files and a same-architecture rebuild in a fresh process keep.

Layers that two parents share are named at their first place in tracking
order. A name that would still repeat (two sub-layers of a subclassed model
given the same `name`) gets a `_1`, `_2`, ... suffix, so every name in one
model is distinct.

The sparsity report, `LotteryCallback.history`, `LotterySummaries` tags and
ticket files all use these names.
"""

from __future__ import annotations

import keras

from tf_lottery import _keras_compat
from tf_lottery.core.walk import prune_wrappers, pruning_target
from tf_lottery.core.wrapper import PruneWrapper


def weight_names(model: keras.layers.Layer) -> dict[int, str]:
    """Maps `id(variable)` to a unique path-like name, for every variable of `model`.

    Respects `lottery_target()` (names are relative to the pruning target).

    Args:
        model: A Keras model or layer, wrapped (`tfl.prunable`) or plain.

    Returns:
        A dict from `id(variable)` to its name; every name is distinct.
    """
    model = pruning_target(model)
    names: dict[int, str] = {}
    used: set[str] = set()
    seen: set[int] = set()

    def assign(variable, name):
        if id(variable) in names:
            return
        unique, count = name, 0
        while unique in used:
            count += 1
            unique = f"{name}_{count}"
        used.add(unique)
        names[id(variable)] = unique

    def visit(layer, prefix):
        if isinstance(layer, PruneWrapper):
            inner = layer.layer
            seen.add(id(inner))
            inner_prefix = f"{prefix}{inner.name}/"
            visit_contents(inner, inner_prefix)
            for mask in _keras_compat.own_variables(layer):
                assign(mask, f"{inner_prefix}{mask.name}")
            return
        visit_contents(layer, f"{prefix}{layer.name}/")

    def visit_contents(layer, prefix):
        for variable in _keras_compat.own_variables(layer):
            assign(variable, f"{prefix}{variable.name}")
        for child in _keras_compat.child_layers(layer):
            if id(child) not in seen:
                seen.add(id(child))
                visit(child, prefix)

    seen.add(id(model))
    if isinstance(model, PruneWrapper):
        visit(model, "")
    else:
        visit_contents(model, "")
    # Variables that no tracked layer owns (rare: a variable created outside
    # any layer and attached to the model) keep Keras' path.
    for variable in model.weights:
        assign(variable, variable.path)
    return names


def pruned_weight_names(model: keras.layers.Layer) -> list[str]:
    """The names of the pruned weights, in the order of `prune_wrappers(model)` and their masks."""
    names = weight_names(model)
    return [names[id(weight)] for wrapper in prune_wrappers(model) for weight in wrapper.pruned_weights]
