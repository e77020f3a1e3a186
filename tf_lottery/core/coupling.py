"""Which output units and filters of a graph model must be pruned together.

`channel_groups(model)` traces a Sequential or functional model call by call
and returns one `UnitGroup` (see `tf_lottery.core.units`) per set of layers
whose units are coupled. Every channel of every tensor in the graph is an
element of a union-find:

- a `Dense`, `EinsumDense`, `Conv1D/2D/3D`, `Conv*Transpose`, separable conv
  or `Embedding` *produces* new elements (its units: the kernel's output
  axis is a producer slice) and *consumes* the elements of its input (the
  kernel's input axis is a consumer slice);
- pass-through layers keep their input's elements: elementwise activations,
  `BatchNormalization` over the last axis, dropout and noise, pooling and
  global pooling, padding, cropping, up-sampling, and depthwise convolutions
  (whose kernel is a consumer slice; with `depth_multiplier` `k` each input
  channel becomes `k` output channels);
- `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum` (layers or
  raw `x + y`) join the elements of their inputs channel by channel;
- `Concatenate` along the channel axis lines its inputs' elements up, so its
  readers' rows are offset per input; `Flatten` (and a `Reshape` whose last
  dimension is a multiple of the channels) repeats them, so a `Dense` after
  `Flatten` of `(h, w, c)` reads unit `u` at rows `u + c * k`;
- nested Sequential and functional models are traced through.

A unit cannot be pruned when one of its elements reaches something that
cannot follow it: the model's inputs or outputs, a layer that is not wrapped
in a `PruneWrapper` and reads or produces it, an operation the tracer does
not know (`Reshape` to fewer channels, `LayerNormalization`, a softmax over
channels, attention, recurrent layers, custom layers), or a grouped
convolution. Such units are left out of the groups; `ChannelTrace.refused`
says why, per wrapped layer, for error messages.

Pruning a unit switches off every slice of its group, producers and
consumers, so whatever the unit still computes (its bias, a BatchNorm shift,
`act(0)`) reaches nothing: the masked model computes what the model with the
unit removed computes. Channels are the last axis (`channels_last`); layers
with `data_format="channels_first"` stop the trace.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.units import CONSUMER, PRODUCER, UnitGroup, UnitSlice, internal_provider
from tf_lottery.core.walk import is_graph_model, iter_layers, pruning_target
from tf_lottery.core.wrapper import PruneWrapper

__all__ = ["ChannelTrace", "channel_groups", "head_groups", "internal_groups", "trace_channels"]

L = keras.layers

_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_CONV_TRANSPOSE = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_POOLING = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.UpSampling3D,
)
_ELEMENTWISE_LAYERS = (
    L.ReLU,
    L.LeakyReLU,
    L.ELU,
    L.PReLU,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.Identity,
)
_MERGE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Activations that act on each channel alone; a softmax (or anything not
# listed) mixes the channels, so a pruned unit's leftover value would reach
# the others.
_ELEMENTWISE_ACTIVATIONS = frozenset(
    "linear relu relu6 leaky_relu elu selu celu gelu sigmoid hard_sigmoid tanh silu swish "
    "hard_silu hard_swish mish softplus softsign exponential log_sigmoid tanh_shrink "
    "soft_shrink hard_shrink hard_tanh squareplus sparse_plus threshold".split()
)
# Not division, square roots or logarithms: a pruned unit's leftover value
# (its bias, say) could turn into NaN there, and NaN times a masked zero
# weight is NaN in every reader.
_RAW_BINARY = frozenset(f"numpy.{name}" for name in ("Add", "Subtract", "Multiply", "Maximum", "Minimum"))
_RAW_UNARY = frozenset(
    [f"nn.{n}" for n in ("Relu", "Relu6", "Sigmoid", "Silu", "Gelu", "Elu", "Selu", "Celu", "Softplus")]
    + [f"nn.{n}" for n in ("Softsign", "HardSigmoid", "HardSilu", "LeakyRelu", "LogSigmoid", "Mish")]
    + [f"numpy.{n}" for n in ("Tanh", "Abs", "Absolute", "Square", "Negative", "Clip")]
)


@dataclass
class ChannelTrace:
    """What `trace_channels` found.

    Attributes:
        groups: The prunable `UnitGroup`s, in graph order.
        refused: `{layer name: reason}` for wrapped layers that produce units
            that cannot be pruned (a sentence fragment: "its units reach the
            model output 'dense_2'").
        layouts: `{layer name: (input layouts, output layouts)}`: for each
            call of a layer in the graph (the last call wins), one int array
            per input and output tensor, the element id of each channel (last
            axis). `element_unit[e]` maps an element to `(group index, unit)`,
            for `tf_lottery.export.shrink` to find which channels of each
            tensor belong to which unit.
        element_unit: `{element id: (group index, unit)}` for the elements
            of prunable groups.
    """

    groups: list[UnitGroup]
    refused: dict[str, str] = field(default_factory=dict)
    layouts: dict[str, tuple[list, list]] = field(default_factory=dict)
    element_unit: dict[int, tuple[int, int]] = field(default_factory=dict)


def channel_groups(model) -> list[UnitGroup]:
    """The prunable groups of output units and filters of `model`, in graph order.

    Graph groups come from tracing a Sequential or functional model (see the
    module docstring); groups of kind `"channels"` from providers registered
    with `tf_lottery.core.units.register_internal_units` are added for
    wrapped layers that have one. Units that cannot be pruned (they reach an
    output, an unwrapped layer or an unknown operation) are left out.

    Example:

    ```python
    model = tfl.prunable(keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(2)]))
    [group.name for group in channel_groups(model)]  # ['dense']
    ```
    """
    return trace_channels(model).groups


def head_groups(model) -> list[UnitGroup]:
    """Attention heads of `model`: the groups of kind `"heads"` from registered providers.

    Raises a ValueError naming the model when no wrapped layer has any.
    """
    groups = internal_groups(model, "heads")
    if not groups:
        raise ValueError(
            f"Invalid value for argument `structure`: 'heads' found no attention heads in "
            f"model '{model.name}'. Heads are pruned in wrapped attention layers whose "
            "heads are registered with `tf_lottery.core.units.register_internal_units` "
            "(MultiHeadAttention, keras_hub attention). Check that they are wrapped "
            "(`tfl.prunable(model)`), or use `structure='channels'` or None."
        )
    return groups


def internal_groups(model, kind: str) -> list[UnitGroup]:
    """The groups of `kind` that registered providers report for the layers of `model`.

    Providers are looked up for every layer, wrapped or not: a keras_hub
    transformer block is not wrapped, but its feed-forward units live inside
    it (between two wrapped `Dense` layers). See
    `tf_lottery.core.attention_units`.
    """
    target = pruning_target(model)
    groups = []
    for layer in [target, *iter_layers(target)]:
        provider = internal_provider(layer)
        if provider is not None:
            groups.extend(g for g in provider(layer) if g.kind == kind)
    return groups


def trace_channels(model) -> ChannelTrace:
    """Traces `model`'s graph into prunable channel groups (see `ChannelTrace`)."""
    model = pruning_target(model)
    tracer = _Tracer()
    graph = _keras_compat.graph_calls(model) if is_graph_model(model) else None
    if graph is not None:
        inputs, outputs, calls = graph
        layouts = {}
        for tensor in inputs:
            layouts[id(tensor)] = tracer.new(
                _width(tensor), blocked=f"meet the model input '{tensor.name}', whose channels stay"
            )
        tracer.trace_calls(calls, layouts)
        for tensor in outputs:
            tracer.block(layouts.get(id(tensor), ()), f"reach the model output '{_producer_name(tensor)}'")
    trace = tracer.collect()
    trace.groups.extend(internal_groups(model, "channels"))
    return trace


def _width(tensor) -> int:
    shape = tuple(tensor.shape)
    return int(shape[-1]) if shape and shape[-1] is not None else 0


def _producer_name(tensor) -> str:
    operation = _keras_compat.keras_history_operation(tensor)
    layer = getattr(operation, "layer", operation) if isinstance(operation, PruneWrapper) else operation
    return getattr(layer, "name", str(tensor.name))


def _activation_is_elementwise(layer) -> bool:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return True
    name = getattr(activation, "__name__", None) or getattr(activation, "name", "")
    return name in _ELEMENTWISE_ACTIVATIONS


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _last_axis(axis, ndim: int) -> bool:
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis in (-1, ndim - 1)


class _Tracer:
    """Union-find over channel elements, with what each element touches."""

    def __init__(self):
        self.parent: list[int] = []
        self.members = defaultdict(list)  # element -> [(slice key, position)]
        self.blocked = defaultdict(list)  # element -> [reason]
        self.touched = defaultdict(set)  # element -> {layer name}
        self.gamma = defaultdict(list)  # element -> [(BatchNormalization, channel)]
        self.slices: dict[tuple, tuple] = {}  # key -> (wrapper, index, axis, role)
        self.layer_order: dict[str, int] = {}
        self.produced: dict[int, np.ndarray] = {}  # id(layer) -> its unit elements
        self.consumed: dict[tuple, np.ndarray] = {}  # consumer key -> the elements of its rows
        self.fresh_outputs: set[int] = set()  # ids of tensors that a producer returned as is
        self.layouts: dict[str, tuple[list, list]] = {}

    # -- elements -----------------------------------------------------------

    def new(self, count: int, blocked: str | None = None) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        elements = np.arange(start, start + count, dtype=np.int64)
        if blocked is not None:
            self.block(elements, blocked)
        return elements

    def find(self, element: int) -> int:
        parent = self.parent
        root = element
        while parent[root] != root:
            root = parent[root]
        while parent[element] != root:
            parent[element], element = root, parent[element]
        return root

    def union(self, a, b) -> None:
        for x, y in zip(np.asarray(a).tolist(), np.asarray(b).tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def block(self, elements, reason: str) -> None:
        for e in np.unique(np.asarray(elements, dtype=np.int64)).tolist():
            if len(self.blocked[e]) < 3:
                self.blocked[e].append(reason)

    def touch(self, elements, layer) -> None:
        self.layer_order.setdefault(layer.name, len(self.layer_order))
        for e in np.unique(np.asarray(elements, dtype=np.int64)).tolist():
            self.touched[e].add(layer.name)

    # -- slices -------------------------------------------------------------

    def _key(self, wrapper, weight, axis: int, role: str) -> tuple | None:
        """The slice key of `weight` in `wrapper`, or None when it is not masked there."""
        if not isinstance(wrapper, PruneWrapper):
            return None
        for index, w in enumerate(wrapper.pruned_weights):
            if w is weight:
                axis = axis % len(w.shape)
                key = (id(wrapper), index, axis, role)
                self.slices.setdefault(key, (wrapper, index, axis, role))
                return key
        return None

    def produce(self, operation, layer, weight, axis: int, count: int) -> np.ndarray:
        """The elements of `layer`'s units (the same ones on every call of a shared layer)."""
        if id(layer) in self.produced:
            return self.produced[id(layer)]
        key = self._key(operation, weight, axis, PRODUCER)
        if key is not None and int(weight.shape[axis]) != count:
            key = None  # not the layout the tracer expects: leave the layer's units alone
        if key is None:
            elements = self.new(count, blocked=f"are produced by '{layer.name}', which is not wrapped")
        else:
            elements = self.new(count)
            for position, e in enumerate(elements.tolist()):
                self.members[e].append((key, position))
        if not _activation_is_elementwise(layer):
            self.block(
                elements,
                f"pass through the activation of '{layer.name}', which may mix channels "
                "(only elementwise activations such as relu or sigmoid are traced)",
            )
        self.touch(elements, layer)
        self.produced[id(layer)] = elements
        return elements

    def consume(self, operation, layer, weight, axis: int, layout: np.ndarray) -> None:
        """Records that `weight`'s `axis` reads `layout` (row `r` reads element `layout[r]`)."""
        self.touch(layout, layer)
        if weight is None or int(weight.shape[axis]) != len(layout):
            self.block(
                layout, f"reach '{layer.name}' ({type(layer).__name__}), whose input the tracer cannot follow"
            )
            return
        key = self._key(operation, weight, axis, CONSUMER)
        if key is None:
            self.block(layout, f"are read by '{layer.name}', which is not wrapped")
            return
        if key in self.consumed:
            # A shared layer: the same rows read both calls' channels.
            self.union(self.consumed[key], layout)
            return
        self.consumed[key] = np.array(layout)
        for position, e in enumerate(np.asarray(layout).tolist()):
            self.members[e].append((key, position))

    # -- the graph ----------------------------------------------------------

    def trace_calls(self, calls: list, layouts: dict) -> None:
        for operation, inputs, outputs, arguments in calls:
            in_layouts = [layouts.get(id(t)) for t in inputs]
            if any(x is None for x in in_layouts):
                out_layouts = [self.new(_width(t), blocked="come out of an untraced part") for t in outputs]
            else:
                out_layouts = self.trace_call(operation, inputs, outputs, arguments, in_layouts)
            for tensor, layout in zip(outputs, out_layouts):
                layouts[id(tensor)] = np.asarray(layout, dtype=np.int64)
            name = getattr(operation, "name", None)
            if name is not None:
                self.layouts[name] = ([np.asarray(x) for x in in_layouts if x is not None], out_layouts)

    def unknown(self, operation, in_layouts, outputs, why: str = "") -> list:
        name = getattr(operation, "name", type(operation).__name__)
        kind = type(getattr(operation, "layer", operation)).__name__
        reason = f"reach '{name}' ({kind}){why or ', which the channel tracer does not follow'}"
        for layout in in_layouts:
            self.block(layout, reason)
        return [self.new(_width(t), blocked=f"come out of '{name}' ({kind})") for t in outputs]

    def trace_call(self, operation, inputs, outputs, arguments, in_layouts) -> list:
        layer = operation.layer if isinstance(operation, PruneWrapper) else operation
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            return self.trace_model(operation, layer, in_layouts, outputs)
        raw = _keras_compat.raw_op_name(operation)
        if raw is not None:
            return self.trace_raw(operation, raw, inputs, outputs, arguments, in_layouts)
        if not isinstance(layer, keras.layers.Layer) or len(outputs) != 1:
            return self.unknown(operation, in_layouts, outputs)
        out_width = _width(outputs[0])
        ndim = len(outputs[0].shape)
        if len(in_layouts) == 1:
            x = in_layouts[0]
            result = self.trace_single(operation, layer, x, inputs[0], out_width, ndim)
            if result is not None:
                if id(result) == id(self.produced.get(id(layer))):
                    self.fresh_outputs.add(id(outputs[0]))
                return [result]
        elif isinstance(layer, _MERGE):
            return [self.merge(layer, in_layouts, out_width)]
        elif isinstance(layer, L.Concatenate):
            return [self.concatenate(layer, layer.axis, inputs, in_layouts, out_width)]
        return self.unknown(operation, in_layouts, outputs)

    def trace_model(self, operation, model, in_layouts, outputs) -> list:
        graph = _keras_compat.graph_calls(model)
        if graph is None or len(graph[0]) != len(in_layouts) or len(graph[1]) != len(outputs):
            return self.unknown(operation, in_layouts, outputs)
        inner_inputs, inner_outputs, calls = graph
        layouts = {id(t): x for t, x in zip(inner_inputs, in_layouts)}
        self.trace_calls(calls, layouts)
        return [
            layouts.get(id(t), self.new(_width(t), blocked="come out of an untraced part"))
            for t in inner_outputs
        ]

    def trace_single(self, operation, layer, x, tensor, out_width: int, ndim: int):
        """The output layout of a one-input layer, or None when it stops the trace."""
        in_width = len(x)
        if isinstance(layer, L.Dense) and type(layer).call is L.Dense.call:
            self.consume(operation, layer, layer.kernel, 0, x)
            return self.produce(operation, layer, layer.kernel, 1, out_width)
        if isinstance(layer, _CONV) and _channels_last(layer):
            if getattr(layer, "groups", 1) != 1:
                # A filter reads only its group's channels: no one slice per unit.
                reason = f"belong to the grouped convolution '{layer.name}' (groups={layer.groups})"
                self.block(x, reason)
                filters = self.produce(operation, layer, layer.kernel, -1, out_width)
                self.block(filters, reason)
                return filters
            self.consume(operation, layer, layer.kernel, -2, x)
            return self.produce(operation, layer, layer.kernel, -1, out_width)
        if isinstance(layer, _CONV_TRANSPOSE) and _channels_last(layer):
            self.consume(operation, layer, layer.kernel, -1, x)
            return self.produce(operation, layer, layer.kernel, -2, out_width)
        if isinstance(layer, _DEPTHWISE) and _channels_last(layer) and _activation_is_elementwise(layer):
            self.consume(operation, layer, layer.kernel, -2, x)
            return np.repeat(x, layer.depth_multiplier)
        if isinstance(layer, _SEPARABLE) and _channels_last(layer):
            self.consume(operation, layer, layer.depthwise_kernel, -2, x)
            self.consume(operation, layer, layer.pointwise_kernel, -2, np.repeat(x, layer.depth_multiplier))
            return self.produce(operation, layer, layer.pointwise_kernel, -1, out_width)
        if isinstance(layer, L.EinsumDense):
            return self.einsum(operation, layer, x, out_width)
        if isinstance(layer, L.Embedding):
            return self.produce(operation, layer, layer.embeddings, 1, out_width)
        if isinstance(layer, L.BatchNormalization) and _last_axis(layer.axis, ndim):
            self.touch(x, layer)
            if id(tensor) in self.fresh_outputs and layer.gamma is not None:
                for channel, e in enumerate(x.tolist()):
                    self.gamma[e].append((layer, channel))
            return x
        if isinstance(layer, L.Activation) and _activation_is_elementwise(layer):
            self.touch(x, layer)
            return x
        if isinstance(layer, _ELEMENTWISE_LAYERS + _POOLING) and _channels_last(layer):
            if out_width != in_width:
                return None
            self.touch(x, layer)
            return x
        if isinstance(layer, (L.Flatten, L.Reshape)) and _channels_last(layer):
            if in_width and out_width % in_width == 0:
                self.touch(x, layer)
                return np.tile(x, out_width // in_width)
        return None

    def einsum(self, operation, layer, x, out_width: int):
        """`EinsumDense` whose input's and output's last axes are each one kernel axis."""
        match = re.fullmatch(r"([a-z.]+),([a-z]+)->([a-z.]+)", layer.equation.replace(" ", ""))
        if match is None:
            return None
        left, kernel, right = (s.replace("...", "") for s in match.groups())
        if not left or not right:
            return None
        read, made = left[-1], right[-1]
        if read not in kernel or read in right or made not in kernel or made in left:
            return None
        self.consume(operation, layer, layer.kernel, kernel.index(read), x)
        return self.produce(operation, layer, layer.kernel, kernel.index(made), out_width)

    def merge(self, layer, in_layouts, out_width: int) -> np.ndarray:
        """Elementwise merge: inputs of the output's width share elements; broadcast ones stop."""
        full = [x for x in in_layouts if len(x) == out_width]
        for x in in_layouts:
            if len(x) != out_width:
                self.block(x, f"are broadcast across channels by '{layer.name}'")
        for x in full[1:]:
            self.union(full[0], x)
        self.touch(np.concatenate([np.asarray(x) for x in in_layouts]), layer)
        return full[0] if full else self.new(out_width, blocked=f"come out of '{layer.name}'")

    def concatenate(self, layer, axis, inputs, in_layouts, out_width: int) -> np.ndarray:
        ndim = len(inputs[0].shape)
        self.touch(np.concatenate([np.asarray(x) for x in in_layouts]), layer)
        if _last_axis(axis, ndim):
            return np.concatenate(in_layouts)
        return self.merge(layer, in_layouts, out_width)

    def trace_raw(self, operation, raw, inputs, outputs, arguments, in_layouts) -> list:
        """`x + y`, `keras.ops.relu(x)`, `keras.ops.concatenate(...)` in a functional graph."""
        if len(outputs) != 1:
            return self.unknown(operation, in_layouts, outputs)
        out_width = _width(outputs[0])
        constants = [a for a in arguments if not isinstance(a, keras.KerasTensor)]
        scalar_constants = all(np.ndim(a) == 0 for a in constants if not isinstance(a, (list, tuple)))
        if raw in _RAW_BINARY and scalar_constants and inputs:
            return [self.merge(operation, in_layouts, out_width)]
        if raw in _RAW_UNARY and len(inputs) == 1 and len(in_layouts[0]) == out_width and scalar_constants:
            self.touch(in_layouts[0], operation)
            return [in_layouts[0]]
        if raw == "numpy.Concatenate" and inputs:
            return [
                self.concatenate(operation, getattr(operation, "axis", None), inputs, in_layouts, out_width)
            ]
        return self.unknown(operation, in_layouts, outputs)

    # -- groups -------------------------------------------------------------

    def collect(self) -> ChannelTrace:
        classes = defaultdict(list)
        for e in range(len(self.parent)):
            classes[self.find(e)].append(e)
        by_signature: dict[tuple, list] = {}
        refused: dict[str, str] = {}
        for elements in classes.values():
            members = [m for e in elements for m in self.members.get(e, ())]
            producer_keys = [k for k, _ in members if k[3] == PRODUCER]
            if not producer_keys:
                continue
            reasons = [r for e in elements for r in self.blocked.get(e, ())]
            if reasons:
                # The model output is the reason a user understands first.
                reasons.sort(key=lambda r: "model output" not in r)
                self._refuse(refused, producer_keys, elements, reasons[0])
                continue
            positions = defaultdict(list)
            for key, position in members:
                positions[key].append(position)
            signature = tuple(sorted((key, len(p)) for key, p in positions.items()))
            by_signature.setdefault(signature, []).append((elements, positions))
        groups, element_unit = [], {}
        for signature, units in by_signature.items():
            group = self._group(signature, units)
            for unit, (elements, _) in enumerate(units):
                for e in elements:
                    element_unit[e] = (len(groups), unit)
            groups.append(group)
        order = sorted(range(len(groups)), key=lambda g: self._slice_order(groups[g].slices[0]))
        renumber = {old: new for new, old in enumerate(order)}
        element_unit = {e: (renumber[g], u) for e, (g, u) in element_unit.items()}
        return ChannelTrace([groups[g] for g in order], refused, self.layouts, element_unit)

    def _slice_order(self, s: UnitSlice) -> tuple:
        return (self.layer_order.get(s.wrapper.layer.name, 0), s.index, int(s.positions.min()))

    def _group(self, signature, units) -> UnitGroup:
        keys = [key for key, _ in signature]
        keys.sort(
            key=lambda k: (k[3] != PRODUCER, self.layer_order.get(self.slices[k][0].layer.name, 0), k[1])
        )
        first = keys[0]
        units.sort(key=lambda unit: min(unit[1][first]))
        slices = []
        for key in keys:
            wrapper, index, axis, role = self.slices[key]
            positions = np.array([sorted(p[key]) for _, p in units], dtype=np.int64)
            slices.append(UnitSlice(wrapper, index, axis, positions, role))
        producers = list(dict.fromkeys(s.wrapper.layer.name for s in slices if s.role == PRODUCER))
        touched = set().union(*(self.touched.get(e, set()) for elements, _ in units for e in elements))
        layers = tuple(sorted(touched, key=lambda n: self.layer_order.get(n, 0)))
        gammas = self._gammas(units)
        return UnitGroup(
            name="+".join(producers),
            kind="channels",
            units=len(units),
            slices=slices,
            gamma=gammas[0][0].gamma if gammas else None,
            layers=layers,
            gammas=tuple((bn.gamma, positions) for bn, positions in gammas),
        )

    def _gammas(self, units) -> list:
        """`(BatchNormalization, positions)` for each BatchNorm right after producers of every unit."""
        per_unit = []
        for elements, _ in units:
            found = defaultdict(list)
            for e in elements:
                for bn, channel in self.gamma.get(e, ()):
                    found[id(bn)].append((bn, channel))
            per_unit.append(found)
        common = set(per_unit[0]).intersection(*per_unit[1:]) if per_unit else set()
        result = []
        for bn_id in sorted(common, key=lambda i: self.layer_order.get(per_unit[0][i][0][0].name, 0)):
            counts = {len(found[bn_id]) for found in per_unit}
            if len(counts) != 1:
                continue
            bn = per_unit[0][bn_id][0][0]
            positions = np.array([sorted(c for _, c in found[bn_id]) for found in per_unit], dtype=np.int64)
            result.append((bn, positions))
        return result

    def _refuse(self, refused: dict, producer_keys, elements, reason: str) -> None:
        names = list(dict.fromkeys(self.slices[k][0].layer.name for k in producer_keys))
        partners = sorted({n for e in elements for n in self.touched.get(e, ())} - set(names))
        for name in names:
            if name in refused:
                continue
            others = [n for n in names if n != name]
            text = f"its units {reason}"
            if others:
                text += f"; they are coupled with the units of {', '.join(repr(n) for n in others)}"
            elif partners:
                shown = ", ".join(repr(n) for n in partners[:4])
                text += f" (through {shown}{', ...' if len(partners) > 4 else ''})"
            refused[name] = text
