"""`shrink(model)`: a plain Keras model with every pruned unit, filter and head physically removed.

A unit pruned with `structure="channels"` has all of its weights masked: the
kernel column (or filter) that computes it and the rows (input channels) of
every layer that reads it (see `tf_lottery.core.units`). Whatever it still
computes (a bias, a BatchNorm shift) reaches nothing, so the layers can be
rebuilt thinner and compute exactly what the masked model computes. `shrink`
rebuilds Sequential and functional models layer by layer (raw ops such as
`h + x` included), with

- the producers' output axis cut: `Dense(units)`, `Conv*(filters)`,
  `Embedding(output_dim)` reduced, kernel columns and bias entries removed;
- the per-channel parameters on the way cut: BatchNormalization's gamma,
  beta and moving statistics, depthwise kernels and biases, PReLU's alpha;
  residual `Add`s, `Concatenate` (at the input's offset), pooling,
  activations and `Flatten` (at each spatial position) carry the cut;
- the readers' input axis cut: kernel rows, input channels.

Layers whose units live inside them (attention heads, a transformer block's
feed-forward units) are rebuilt by the function registered for their class
with `register_internal_shrinker`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np

from tf_lottery.core import units as units_lib
from tf_lottery.core.walk import is_graph_model, iter_layers, model_variables, prune_wrappers, pruning_target
from tf_lottery.core.wrapper import PruneWrapper
from tf_lottery.export.shrink_graph import (  # noqa: F401 - the registry is public here
    DEPTHWISE_LAYERS,
    LayerShrink,
    Rebuild,
    internal_shrinker,
    register_internal_shrinker,
)


@dataclass(frozen=True)
class ShrinkReport:
    """What `shrink` removed: the layers it changed and the model's parameter counts.

    Attributes:
        layers: One `LayerShrink` per layer whose parameters or units changed,
            in graph order.
        params_before: Parameters of the masked model (masks not counted).
        params_after: Parameters of the shrunk model.
    """

    layers: tuple[LayerShrink, ...]
    params_before: int
    params_after: int

    def __str__(self) -> str:
        lines = [f"{'layer':<32} {'units':>15} {'params':>23}"]
        for row in self.layers:
            units = "-" if row.units_before is None else f"{row.units_before} -> {row.units_after}"
            lines.append(f"{row.name:<32} {units:>15} {row.params_before:>10} -> {row.params_after:<10}")
        ratio = self.params_after / max(self.params_before, 1)
        lines.append(
            f"{'total':<32} {'':>15} {self.params_before:>10} -> {self.params_after:<10} ({ratio:.3f}x)"
        )
        return "\n".join(lines)


def shrink(model: keras.Model, *, groups=None, return_report: bool = False):
    """Returns a plain Keras model in which every pruned unit is physically removed.

    Units (Dense units, convolution filters, with their coupled partners) are
    removed when all of their weights are masked: the producers' entries
    (`tf_lottery.core.units.unit_alive` is False) and the readers' entries,
    as `tfl.prune(..., structure="channels")` leaves them. The result has
    thinner layers, no `PruneWrapper` and no masks, and computes what
    `model` computes (to float32 rounding); it saves as `.keras` and exports
    with `tfl.export_saved_model` / `tfl.export_tflite` like any Keras model.
    The input model is not changed.

    Args:
        model: A built Sequential or functional model holding `PruneWrapper`
            layers, pruned with `structure="channels"` (or `"heads"`). A model
            with a `lottery_target()` (a `KDDistiller`) is shrunk to its
            student.
        groups: list of `tf_lottery.core.units.UnitGroup`. The coupled units
            to consider. Defaults to `tf_lottery.core.coupling.channel_groups(model)`.
        return_report: bool. Also return a `ShrinkReport` (per changed layer:
            units and parameters before and after). Defaults to `False`.

    Returns:
        The new `keras.Model`, or `(model, report)` with `return_report=True`.

    Raises:
        ValueError: for a model without `PruneWrapper` layers, or whose masks
            remove no whole unit (unstructured or N:M masks: prune with
            `structure="channels"`).

    Example:

    ```python
    tfl.prune(model, target_sparsity=0.5, structure="channels")
    small, report = tfl.shrink(model, return_report=True)
    print(report)
    small.save("small.keras")
    ```
    """
    model = pruning_target(model) if isinstance(model, keras.layers.Layer) else model
    if not isinstance(model, keras.layers.Layer) or not is_graph_model(model):
        raise ValueError(
            "Invalid value for argument `model`: expected a Sequential or functional Keras model. "
            f"Received: model={model!r} of type {type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' is not built. "
            "Call it on an input (or train it) before shrinking."
        )
    wrappers = prune_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' holds no PruneWrapper layers, "
            "so nothing is pruned and nothing can be removed. Make it prunable with "
            "`tfl.prunable(model)` and prune it with `tfl.prune(model, ..., structure='channels')`."
        )
    if groups is None:
        # Imported here: the tracer is optional until it exists in every build.
        from tf_lottery.core.coupling import channel_groups

        groups = channel_groups(model)
    masks = {(id(w), i): m for w in wrappers for i, m in enumerate(w.get_masks())}
    removed, half_dead = _removed_outputs(groups, masks)
    if not removed and not any(internal_shrinker(layer) for layer in iter_layers(model)):
        raise _nothing_removed(model, masks, half_dead)
    rebuild = Rebuild(removed)
    new_model = rebuild.model(model)
    params_before = sum(int(np.prod(v.shape)) for v in model_variables(model))
    params_after = new_model.count_params()
    if params_after >= params_before:
        raise _nothing_removed(model, masks, half_dead)
    if not return_report:
        return new_model
    return new_model, ShrinkReport(tuple(rebuild.rows), params_before, params_after)


def _nothing_removed(model, masks, half_dead) -> ValueError:
    sparse = sum(int((~m).sum()) for m in masks.values())
    detail = (
        f" {half_dead} unit(s) have all of their own weights pruned but their readers still "
        "read them (a bias or BatchNorm shift still reaches the next layer)."
        if half_dead
        else ""
    )
    return ValueError(
        f"Invalid value for argument `model`: nothing can be removed from '{model.name}': "
        f"its masks ({sparse} pruned entries) switch off no whole unit, filter or head.{detail} "
        "Unstructured and N:M masks keep every unit; prune with "
        "`tfl.prune(model, ..., structure='channels')` (or 'heads') to get units that "
        "`shrink` can remove."
    )


def _removed_outputs(groups, masks) -> tuple[dict, int]:
    """`{id(producer layer): removed output channels}`, and how many units are dead on one side only.

    A group whose units are all off keeps its first unit (with a warning).
    """
    removed: dict[int, set] = {}
    half_dead = 0
    emptied = []
    for group in groups:
        if group.kind != "channels":
            continue
        producers_off = ~units_lib.unit_alive(group, masks)
        readers_off = _readers_off(group, masks)
        dead = np.flatnonzero(producers_off & readers_off)
        half_dead += int((producers_off & ~readers_off).sum())
        if dead.size == 0:
            continue
        if dead.size == group.units:
            # A Keras layer needs one unit; its readers' rows are masked, so no layer reads what it computes.
            emptied.append(group.name)
            dead = dead[1:]
        for s in group.producers():
            inner = s.wrapper.layer if isinstance(s.wrapper, PruneWrapper) else s.wrapper
            if isinstance(inner, DEPTHWISE_LAYERS):
                continue  # carries its input's channels; cut through the graph
            removed.setdefault(id(s.wrapper), set()).update(np.ravel(s.positions[dead]).tolist())
    if emptied:
        warnings.warn(
            f"shrink: every unit of {len(emptied)} layer group(s) is pruned ({', '.join(emptied[:5])}"
            f"{', ...' if len(emptied) > 5 else ''}); one unit of each is kept, read by no layer, because "
            "a Keras layer needs at least one. The model's output no longer depends on what feeds "
            "them. Global pruning can empty a layer; `scope='layer'` prunes each layer by the same fraction.",
            stacklevel=3,
        )
    return {k: np.array(sorted(v), dtype=int) for k, v in removed.items()}, half_dead


def _readers_off(group, masks) -> np.ndarray:
    """Boolean `(units,)`: every reader entry of the unit is masked (True when it has no reader slice)."""
    consumers = group.consumers()
    if not consumers:
        return np.zeros(group.units, dtype=bool)
    off = np.ones(group.units, dtype=bool)
    for s in consumers:
        mask = np.moveaxis(np.asarray(masks[(id(s.wrapper), s.index)], dtype=bool), s.axis, 0)
        per_position = mask.reshape(mask.shape[0], -1).any(axis=1)
        off &= ~per_position[s.positions].any(axis=1)
    return off
