"""The graph rebuild behind `shrink`: a model's layers remade thinner, with the channels each tensor lost.

`Rebuild` clones a Sequential or functional model op by op (raw ops such as
`h + x` included; nested functional models inline), tracking which channels
of each tensor were removed: producers lose output units (`Dense(units)`,
`Conv*(filters)`, `Embedding(output_dim)`, with kernel columns and bias
entries), per-channel layers on the way (BatchNormalization, depthwise
kernels, PReLU) lose the same channels, merges, pooling, activations,
`Concatenate` (at the input's offset), `Flatten` and `Reshape` carry the cut,
and readers lose the matching input rows. Layers whose units live inside
them are rebuilt by the function registered with `register_internal_shrinker`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from tf_lottery.core.walk import is_graph_model, model_variables
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
DEPTHWISE_LAYERS = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
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


class Rebuild:
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
            new = keras.Sequential([first, *layers], name=model.name)
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
            nested = Rebuild(self.removed)
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
        if isinstance(inner, DEPTHWISE_LAYERS):
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
