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
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from tf_lottery.core import units as units_lib
from tf_lottery.core.walk import is_graph_model, iter_layers, model_variables, prune_wrappers, pruning_target
from tf_lottery.core.wrapper import PruneWrapper

# Layer class -> fn(layer) -> new layer with the same input and output shapes.
_INTERNAL_SHRINKERS: list[tuple[type, Callable]] = []

_UNITS_KEY = (
    (keras.layers.Dense, "units"),
    (keras.layers.Embedding, "output_dim"),
    (keras.layers.SeparableConv1D, "filters"),
    (keras.layers.SeparableConv2D, "filters"),
    (keras.layers.Conv1D, "filters"),
    (keras.layers.Conv2D, "filters"),
    (keras.layers.Conv3D, "filters"),
    (keras.layers.Conv1DTranspose, "filters"),
    (keras.layers.Conv2DTranspose, "filters"),
    (keras.layers.Conv3DTranspose, "filters"),
)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
# Layers whose output channel `c` is a function of input channel `c` alone.
_PASS_THROUGH = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Identity,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Average,
)
_NONE = np.zeros(0, dtype=int)


def register_internal_shrinker(layer_class: type, fn: Callable) -> None:
    """Registers how `shrink` rebuilds layers whose units live inside them.

    `fn(layer) -> new_layer` receives the layer as it sits in the model (a
    `PruneWrapper` around an instance of `layer_class`, or the instance
    itself) and returns a plain (unwrapped) layer with its internally dead
    units removed (attention heads, feed-forward units) and the SAME input
    and output shapes. Later registrations take precedence.

    Args:
        layer_class: type. The layer class (instances of subclasses match).
        fn: Callable. The rebuild function.
    """
    _INTERNAL_SHRINKERS.insert(0, (layer_class, fn))


def internal_shrinker(layer) -> Callable | None:
    """The function registered for `layer` (a wrapper's inner layer is looked up), or `None`."""
    inner = layer.layer if isinstance(layer, PruneWrapper) else layer
    for layer_class, fn in _INTERNAL_SHRINKERS:
        if isinstance(inner, layer_class):
            return fn
    return None


@dataclass(frozen=True)
class LayerShrink:
    """One layer's change: output units (channels) and parameters, before and after.

    `units_*` is the size of the layer's output's last axis (`None` for a
    layer rebuilt by an internal shrinker, whose output keeps its shape).
    """

    name: str
    units_before: int | None
    units_after: int | None
    params_before: int
    params_after: int


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
    rebuild = _Rebuild(removed)
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
            if isinstance(inner, _DEPTHWISE):
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


class _Rebuild:
    """Rebuilds a graph model layer by layer, carrying the removed channels of each tensor."""

    def __init__(self, removed: dict):
        self.removed = removed  # id(old layer) -> removed output channels
        self.cut = {}  # id(new tensor) -> (tensor, removed channels along its last axis)
        self.built = {}  # id(old layer) -> new layer (shared layers are rebuilt once)
        self.rows: list[LayerShrink] = []

    def model(self, model):
        if isinstance(model, keras.Sequential):
            inputs = model.inputs[0]
            x = keras.Input(batch_shape=inputs.shape, dtype=inputs.dtype)
            layers = []
            for layer in model.layers:
                x = self.call(layer, x)
                layers.append(self.built[id(layer)])
            self._check_outputs(model, [x])
            # Named as the input it replaces: the exports' signatures keep their input name.
            first = keras.layers.InputLayer(batch_shape=inputs.shape, dtype=inputs.dtype, name=inputs.name)
            new = keras.Sequential(
                [first, *layers],
                name=model.name,
            )
            if model.compiled:
                new.compile_from_config(model.get_compile_config())
            return new
        new = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=self.call)
        self._check_outputs(model, new.outputs)
        return new

    def _inline(self, op, args, kwargs):
        """Runs nested functional model `op`'s layers in this level's graph.

        Units then cross the nested model's boundary like any other tensor
        (`channel_groups` traces through nested models: a keras_hub
        backbone's `pooled_dense` is read by its task's head), and a layer
        that both levels run (`GPT2CausalLM`'s tied token embedding) stays one
        layer: Keras cannot save a nested model and its parent sharing a layer
        as `.keras`.
        """
        (inputs,) = args
        inlined = keras.models.clone_model(
            op, input_tensors=inputs, clone_function=lambda layer: layer, call_function=self.call
        )
        return inlined.output

    def _check_outputs(self, model, outputs):
        for tensor in outputs:
            if self._cut_of(tensor).size:
                raise ValueError(
                    f"Cannot shrink '{model.name}': units would be removed from its output "
                    f"(shape {tuple(tensor.shape)}). The layers that compute a model's outputs "
                    "must keep all of their units."
                )

    def _cut_of(self, tensor) -> np.ndarray:
        entry = self.cut.get(id(tensor))
        return _NONE if entry is None else entry[1]

    def call(self, op, *args, **kwargs):
        tensors = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        cuts = [self._cut_of(t) for t in tensors]
        name = getattr(op, "name", type(op).__name__)
        if not isinstance(op, keras.layers.Layer):
            outputs = op(*args, **kwargs)
            out = _elementwise_cut(name, tensors, cuts, outputs)
            return self._record(outputs, out)
        if is_graph_model(op) and not isinstance(op, keras.Sequential):
            return self._inline(op, args, kwargs)
        new = self.built.get(id(op))
        if new is None:
            new = self._new_layer(op, tensors, cuts)
            self.built[id(op)] = new
            outputs = new(*args, **kwargs)
            out = self._output_cut(op, new, tensors, cuts, outputs)
            if internal_shrinker(op) is None and not is_graph_model(new):
                self._fill(op, new, cuts, out)
            self._report(op, new, tensors, outputs, out)
        else:
            outputs = new(*args, **kwargs)
            out = self._output_cut(op, new, tensors, cuts, outputs)
        return self._record(outputs, out)

    def _record(self, outputs, out):
        for tensor in keras.tree.flatten(outputs):
            if isinstance(tensor, keras.KerasTensor):
                self.cut[id(tensor)] = (tensor, out)
        return outputs

    def _new_layer(self, op, tensors, cuts):
        inner = op.layer if isinstance(op, PruneWrapper) else op
        shrinker = internal_shrinker(op)
        if shrinker is not None:
            if any(c.size for c in cuts):
                raise ValueError(
                    f"Cannot shrink '{op.name}': channels of its inputs are removed, but "
                    f"{type(inner).__name__} is rebuilt by its internal shrinker, which keeps "
                    "its input shapes. Keep the units that feed it."
                )
            return shrinker(op)
        if is_graph_model(inner):
            if any(c.size for c in cuts):
                raise ValueError(
                    f"Cannot shrink '{op.name}': channels entering the nested model are removed; "
                    "only units inside one model level (or inside the nested model) can be removed."
                )
            nested = _Rebuild(self.removed)
            new = nested.model(inner)
            self.rows.extend(nested.rows)
            return new
        config = inner.get_config()
        out_cut = self.removed.get(id(op), _NONE)
        if getattr(inner, "groups", 1) > 1 and (out_cut.size or any(c.size for c in cuts)):
            raise ValueError(
                f"Cannot shrink grouped convolution '{inner.name}' (groups={inner.groups}): "
                "removing its filters or input channels would unbalance the groups."
            )
        if out_cut.size and isinstance(inner, keras.layers.EinsumDense):
            inputs, output = inner.equation.split("->")
            if inputs.split(",")[1][-1] != output[-1]:
                raise ValueError(
                    f"Cannot remove output units of EinsumDense '{inner.name}': its kernel's last "
                    f"axis is not its output's last axis (equation '{inner.equation}')."
                )
            shape = config["output_shape"]
            config["output_shape"] = (
                shape - out_cut.size if isinstance(shape, int) else [*shape[:-1], shape[-1] - out_cut.size]
            )
        elif out_cut.size:
            key = _units_key(inner)
            if config[key] <= out_cut.size:
                raise ValueError(
                    f"Cannot shrink '{inner.name}': all of its {config[key]} units are pruned. "
                    "Keep at least one unit per layer."
                )
            config[key] = config[key] - out_cut.size
        if (
            isinstance(inner, keras.layers.Reshape)
            and cuts
            and cuts[0].size
            and config["target_shape"][-1] != -1
        ):
            shape = tensors[0].shape
            old_width = shape[-1] + cuts[0].size
            repeats = inner.compute_output_shape((None, *shape[1:-1], old_width))[-1] // old_width
            config["target_shape"] = (*config["target_shape"][:-1], repeats * shape[-1])
        return type(inner).from_config(config)

    def _output_cut(self, op, new, tensors, cuts, outputs) -> np.ndarray:
        inner = op.layer if isinstance(op, PruneWrapper) else op
        own = self.removed.get(id(op))
        if own is not None and own.size:
            return own
        in_cut = cuts[0] if cuts else _NONE
        if not any(c.size for c in cuts):
            return _NONE
        _check_channels_last(inner, len(tensors[0].shape))
        if isinstance(inner, _DEPTHWISE):
            mult = inner.depth_multiplier
            return np.sort((in_cut[:, None] * mult + np.arange(mult)[None, :]).ravel())
        if isinstance(inner, keras.layers.Concatenate):
            if inner.axis not in (-1, len(tensors[0].shape) - 1):
                raise ValueError(
                    f"Cannot shrink through '{inner.name}': it concatenates along axis {inner.axis}."
                )
            parts, offset = [], 0
            for tensor, cut in zip(tensors, cuts):
                parts.append(cut + offset)
                offset += tensor.shape[-1] + cut.size
            return np.concatenate(parts)
        if isinstance(inner, (keras.layers.Flatten, keras.layers.Reshape)):
            # The last axis holds whole runs of the input's channels: unit `u` at `u + c * k`.
            width = tensors[0].shape[-1]
            repeats = keras.tree.flatten(outputs)[0].shape[-1] // width
            return np.sort((np.arange(repeats)[:, None] * (width + in_cut.size) + in_cut[None, :]).ravel())
        if isinstance(inner, _PASS_THROUGH):
            return _same_cut(inner.name, cuts)
        if _units_key(inner, default=None) is not None or isinstance(inner, keras.layers.EinsumDense):
            return _NONE  # a reader: its rows are cut, its outputs are whole
        raise ValueError(
            f"Cannot shrink through layer '{inner.name}' of type {type(inner).__name__}: channels "
            "of its input are removed, and shrink does not know how it maps input channels to "
            "output channels. Keep the units that feed it."
        )

    def _fill(self, op, new, cuts, out_cut):
        inner = op.layer if isinstance(op, PruneWrapper) else op
        old_vars, new_vars = inner.weights, new.weights
        if len(old_vars) != len(new_vars):
            raise ValueError(
                f"Cannot shrink '{inner.name}': the rebuilt layer has {len(new_vars)} weights, "
                f"the original {len(old_vars)}."
            )
        in_cut = cuts[0] if cuts else _NONE
        for old, var in zip(old_vars, new_vars):
            value = np.asarray(keras.ops.convert_to_numpy(old))
            for axis in range(value.ndim):
                if value.shape[axis] == var.shape[axis]:
                    continue
                cut = _axis_cut(inner, old, axis, in_cut, out_cut)
                if value.shape[axis] - cut.size != var.shape[axis]:
                    raise ValueError(
                        f"Cannot shrink '{old.path}': axis {axis} has {value.shape[axis]} entries, "
                        f"{cut.size} removed, but the rebuilt layer has {var.shape[axis]}."
                    )
                value = np.delete(value, cut, axis=axis)
            var.assign(value)

    def _report(self, op, new, tensors, outputs, out_cut):
        inner = op.layer if isinstance(op, PruneWrapper) else op
        # Masks of wrappers inside the layer (a transformer block's) are not parameters.
        before = sum(int(np.prod(v.shape)) for v in model_variables(op)) if inner.built else 0
        after = new.count_params()
        out = keras.tree.flatten(outputs)[0]
        internal = internal_shrinker(op) is not None or is_graph_model(inner)
        if before == after and (not out_cut.size or before == 0):
            return  # unchanged, or a layer without parameters (an activation) carrying the cut
        units_after = None if internal else int(out.shape[-1])
        units_before = None if internal else units_after + int(out_cut.size)
        self.rows.append(LayerShrink(inner.name, units_before, units_after, int(before), int(after)))


def _units_key(layer, default=...):
    for layer_class, key in _UNITS_KEY:
        if isinstance(layer, layer_class):
            return key
    if default is ...:
        raise ValueError(
            f"Cannot remove output units of layer '{layer.name}' of type {type(layer).__name__}: "
            "shrink rebuilds Dense, Conv*, Conv*Transpose, SeparableConv* and Embedding with "
            "fewer units."
        )
    return default


def _check_channels_last(layer, rank: int):
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"Cannot shrink through layer '{layer.name}': data_format='{layer.data_format}'; "
            "shrink removes channels along the last axis (channels_last)."
        )
    if isinstance(layer, keras.layers.BatchNormalization) and layer.axis not in (-1, rank - 1):
        raise ValueError(
            f"Cannot shrink through '{layer.name}': it normalizes axis {layer.axis}, not the channels (last axis)."
        )


def _same_cut(name, cuts) -> np.ndarray:
    cut = cuts[0]
    for other in cuts[1:]:
        if not np.array_equal(other, cut):
            raise ValueError(
                f"Cannot shrink '{name}': its inputs lose different channels ({cut.tolist()} and "
                f"{other.tolist()}). Units that meet in an elementwise op must be pruned together."
            )
    return cut


def _elementwise_cut(name, tensors, cuts, outputs) -> np.ndarray:
    """A raw op carries its inputs' removed channels when it keeps the last axis (elementwise)."""
    carrying = [(t, c) for t, c in zip(tensors, cuts) if c.size]
    if not carrying:
        return _NONE
    cut = _same_cut(name, [c for _, c in carrying])
    width = carrying[0][0].shape[-1]
    for tensor in keras.tree.flatten(outputs):
        if not isinstance(tensor, keras.KerasTensor) or not tensor.shape or tensor.shape[-1] != width:
            raise ValueError(
                f"Cannot shrink through op '{name}': channels of its input are removed and it "
                "does not keep the channel axis. Keep the units that feed it."
            )
    return cut


def _axis_cut(layer, variable, axis, in_cut, out_cut) -> np.ndarray:
    """The entries to remove from `variable` along `axis`: the input's or the output's channels."""
    ndim = len(variable.shape)
    last = axis == ndim - 1
    if isinstance(layer, _TRANSPOSED) and ndim > 1:
        return in_cut if last else out_cut
    if isinstance(layer, _SEPARABLE) and variable is layer.pointwise_kernel and not last:
        mult = layer.depth_multiplier
        return np.sort((in_cut[:, None] * mult + np.arange(mult)[None, :]).ravel())
    if last and out_cut.size and variable.shape[axis] - out_cut.size >= 0:
        return out_cut
    return in_cut
