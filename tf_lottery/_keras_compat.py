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
import sys

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses import loss as keras_loss
from keras.src.models.functional import Functional, functional_like_constructor
from keras.src.utils import naming
from tensorflow.python.ops import control_flow_v2_func_graphs

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


def graph_is_cloneable(model) -> bool:
    """Whether `keras.models.clone_model` rebuilds `model` with its own class.

    True for Sequential models and for functional models whose class takes
    `(inputs, outputs)`; False for functional subclasses with a constructor
    of their own (keras_hub's backbones and task models), which
    `clone_model` would turn into a plain `Functional`, losing their class,
    attributes and methods (`generate()`).
    Why private: Keras' own test is `keras.src.models.cloning.functional_like_constructor`.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    if isinstance(model, keras.Sequential) or type(model) is Functional:
        return True
    return functional_like_constructor(type(model))


def graph_layers(model) -> list:
    """The layers a functional `model` runs, in graph order."""
    return [op for op in model._operations if isinstance(op, keras.layers.Layer)]


def replace_graph_operation(model, old: keras.layers.Layer, new: keras.layers.Layer) -> None:
    """Makes functional `model` run `new` wherever its graph ran `old`.

    Updates the operation lists (`_operations`, a TensorFlow-tracked list, so
    `tf.train.Checkpoint` follows; `_operations_by_depth`), every graph node's
    `operation`, and Keras' tracker. The graph's symbolic tensors keep naming
    `old` as their producer, so a graph-based `get_config()` of `model` is
    not updated (keras_hub's models serialise their constructor arguments).
    Why private: Keras has no public way to swap a layer inside a built graph.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    for i, op in enumerate(model._operations):
        if op is old:
            model._operations[i] = new
    for ops_at_depth in model._operations_by_depth.values():
        for i, op in enumerate(ops_at_depth):
            if op is old:
                ops_at_depth[i] = new
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.operation is old:
                node.operation = new
    replace_sub_layer(model, old, new)


class GraphNode:
    """One call of an operation in a functional graph, as `Functional.call` runs it.

    `inputs` / `outputs` are the ids of the symbolic tensors the call reads and
    writes; `arguments(values)` fills the call's `(args, kwargs)` from
    computed values keyed by those ids.
    """

    def __init__(self, node):
        self.operation = node.operation
        self.inputs = tuple(id(x) for x in node.input_tensors)
        self.outputs = tuple(id(x) for x in node.outputs)
        self._node = node

    def arguments(self, values: dict) -> tuple[tuple, dict]:
        return self._node.arguments.fill_in(values)

    def call(self, values: dict, training: bool = False) -> list:
        """The operation's outputs on `values`, flat, as `Functional.call(training=...)` computes them."""
        args, kwargs = self.arguments(values)
        if "training" in getattr(self.operation, "_call_context_args", ()):
            kwargs["training"] = training
        return keras.tree.flatten(self.operation(*args, **kwargs))


def functional_graph(model):
    """The functional graph that runs `model`'s `call`, or None.

    A functional model is its own graph; a Sequential model built with an
    input shape runs an inner functional graph (`Sequential._functional`);
    anything else (a subclassed model or layer) has none.
    Why private: Keras does not expose a graph's nodes; this and
    `graph_nodes` / `graph_input_values` read `Functional._nodes_by_depth`,
    `Node.arguments.fill_in`, `Functional._standardize_inputs` and
    `Layer._call_context_args`, the pieces `Functional.call` itself uses.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    if isinstance(model, Functional):
        return model
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return None


def graph_nodes(graph) -> list[GraphNode]:
    """The calls of functional `graph` in the order `Functional.call` runs them (inputs left out)."""
    result = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                result.append(GraphNode(node))
    return result


def graph_input_ids(graph) -> list[int]:
    return [id(x) for x in graph.inputs]


def graph_output_ids(graph) -> list[int]:
    return [id(x) for x in graph.outputs]


def graph_input_values(layer: keras.layers.Layer, graph, inputs) -> list:
    """`inputs` as the flat list `layer`'s graph computes on: converted and standardized as
    `Layer.__call__` and `Functional.call` do (dtype policy, input structure, rank)."""

    if layer._convert_input_args:  # False for functional models, True for Sequential
        inputs = keras.tree.map_structure(
            lambda x: layer.dtype_policy.convert_input(x, layer.autocast, layer.input_dtype), inputs
        )
    return graph._standardize_inputs(inputs)


def keras_history_operation(tensor):
    """The layer (operation) that produced the symbolic `KerasTensor` `tensor`.

    Why private: Keras records a tensor's producer only in its
    `_keras_history`; there is no public accessor.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return tensor._keras_history.operation


def graph_calls(model) -> tuple[list, list, list] | None:
    """`(inputs, outputs, calls)` of a Sequential or functional `model`'s graph, or `None`.

    `calls` lists one `(operation, input_tensors, output_tensors, arguments)`
    per call in the graph, producers before their readers (inputs first);
    `arguments` is the flat list of the call's arguments, tensors and
    constants alike. A Sequential model that was never built has no graph
    (`None`).
    Why private: a functional model's calls are Keras `Node`s, listed only in
    `Functional._nodes_by_depth`; a Sequential model keeps its graph in
    `Sequential._functional`. Tracing which channels couple (a residual add,
    a concatenation) needs each call's own input and output tensors, which
    `Model.layers` does not give (a layer may be called twice; raw ops such
    as `x + y` are no layers at all).
    Reads the graph through `functional_graph` / `graph_nodes` below.
    Checked: Keras 3.15.1 (TF 2.21); the oldest pair's tests run it on 3.12.0.
    """
    function = functional_graph(model)
    if function is None:
        return None
    calls = []
    for node in graph_nodes(function):
        raw = node._node
        arguments = list(raw.arguments.args) + list(raw.arguments.kwargs.values())
        calls.append((node.operation, list(raw.input_tensors), list(raw.outputs), arguments))
    return list(function.inputs), list(function.outputs), calls


def raw_op_name(operation) -> str | None:
    """`"numpy.Add"` for the operation that `x + y` records in a functional graph; `None` for layers.

    Why private: the operations that `keras.ops` functions record on symbolic
    tensors are classes of `keras.src.ops.<module>` with no public name; the
    module and class name are the only stable way to tell `add` from `reshape`.
    Checked: Keras 3.15.1 (TF 2.21); not yet read on 3.12.0.
    """
    if isinstance(operation, keras.layers.Layer):
        return None
    module = type(operation).__module__
    if not module.startswith("keras.src.ops."):
        return None
    return f"{module.rsplit('.', 1)[-1]}.{type(operation).__name__}"


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


# Keras' and a functional graph's own records of sub-layers; changed only
# through `replace_sub_layer` / `replace_graph_operation`.
_BOOKKEEPING = ("_layers", "_tracker", "_operations", "_operations_by_depth", "_nodes_by_depth")


def instance_attributes(layer: keras.layers.Layer) -> list[tuple[str, object]]:
    """`(name, value)` of `layer`'s own attributes, less dunders and Keras' tracking state.

    Why private: replacing a sub-layer in place means reading the attributes
    that hold it; `_layers` and `_tracker` are Keras' bookkeeping of the same
    sub-layers and must be left to `replace_sub_layer`, and so are
    TensorFlow's `_self_unconditional_*` checkpoint dependencies (see
    `replace_sub_layer`). Other `_self_...` names are ordinary attributes
    (keras_hub's `_self_attention_layer`).
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return [
        (name, value)
        for name, value in list(vars(layer).items())
        if not (name.startswith(("__", "_self_unconditional")) or name in _BOOKKEEPING)
    ]


def replace_sub_layer(
    container: keras.layers.Layer, old: keras.layers.Layer, new: keras.layers.Layer
) -> None:
    """Makes `container` track `new` wherever it tracked `old`, for Keras and for TensorFlow.

    The caller puts `new` into the attribute (or list, dict, tuple) that held
    `old`; this updates the bookkeeping of both tracking systems:

    - Keras' `Tracker` (`_tracker`): `new` takes `old`'s position in the
      layer list, so the order of `weights` is kept, also on an
      already-built container whose tracker is locked.
    - TensorFlow's checkpoint dependencies
      (`_self_unconditional_checkpoint_dependencies` and
      `_self_unconditional_dependency_names`): `tf.train.Checkpoint` saves a
      subclassed model through the named dependencies recorded when the
      attribute was first set; re-setting the attribute does not replace
      them (`_track_trackable` sees the new object under the name already and
      skips it), so without this the checkpoint keeps saving `old` (without
      the masks).

    Why private: Keras has no public way to swap a tracked sub-layer, and
    TensorFlow none to re-point a named checkpoint dependency.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    tracker = container._tracker
    if tracker.is_in_store("layers", old) and not tracker.is_in_store("layers", new):
        tracker.replace_tracked_value("layers", old, new)
    dependencies = getattr(container, "_self_unconditional_checkpoint_dependencies", None)
    if dependencies is None:
        return
    for index, reference in enumerate(dependencies):
        if reference.ref is old:
            dependencies[index] = type(reference)(reference.name, new)
            container._self_unconditional_dependency_names[reference.name] = new


def track_for_checkpoint(container: keras.layers.Layer, name: str, layer: keras.layers.Layer) -> None:
    """Makes `tf.train.Checkpoint` save `layer` as `container`'s dependency `name`.

    Why private: Keras 3 records layers held in lists, dicts and sets in its
    own tracker, which TensorFlow's checkpointing does not follow
    (`TFLayer._trackable_children` adds them for SavedModel only, see
    keras-team/keras#18398); `Trackable._track_trackable` is TensorFlow's way
    to add a named dependency.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    container._track_trackable(layer, name=name, overwrite=True)


def keeps_default_output_spec(method):
    """Marks a `compute_output_shape` override as Keras' default one.

    Keras computes a layer's symbolic output by running its `call` unless
    `compute_output_shape` is overridden (`utils.is_default`). A wrapper that
    must answer `compute_output_shape` for callers (`TimeDistributed`) and
    still create its state in `call` needs Keras to keep running `call`.
    Why private: the marker is Keras' `_is_default` attribute
    (`keras.src.utils.python_utils.default`).
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    method._is_default = True
    return method


def rebuild_tuple(original: tuple, items: list) -> tuple:
    """A tuple like `original` (a named tuple keeps its class) holding `items`.

    Why private: a tuple attribute of a Keras layer is stored wrapped in
    TensorFlow's tracking proxy (`_TupleWrapper`, whose constructor takes the
    tuple), and a named tuple is recognised by its `_fields`; a plain tuple is
    returned for the proxy, and the attribute set with it is wrapped again.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    kind = original.__class__  # through the proxy: the wrapped tuple's class
    if kind is not tuple and hasattr(kind, "_fields"):
        return kind(*items)
    return tuple(items)


def adopt_call_signature(wrapper: keras.layers.Layer, layer: keras.layers.Layer) -> None:
    """Makes Keras bind `wrapper`'s call arguments as it binds `layer`'s.

    A wrapper whose `call(*args, **kwargs)` forwards everything to `layer`
    would otherwise be bound by Keras as one nested `kwargs` argument, and
    Keras refuses a nested argument that mixes tensors and Python values:
    keras_hub's cached attention is called as `layer(query=..., cache=...,
    cache_update_index=0)` in `generate()`. With `layer`'s signature each
    argument is bound on its own, and `training` and `mask` are passed on
    exactly when `layer` takes them.
    Why private: Keras reads the signature once, in `Layer.__init__`, into
    `_call_signature` and the flags derived from it (`_call_has_training_arg`,
    `_call_has_mask_arg`, `_call_context_args`, `_call_has_context_arg`);
    there is no public way to declare a forwarding `call`'s signature.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    wrapper._call_signature = layer._call_signature
    wrapper.call_signature_parameters = list(layer.call_signature_parameters)
    wrapper._call_has_training_arg = layer._call_has_training_arg
    wrapper._call_has_mask_arg = layer._call_has_mask_arg
    wrapper._call_context_args = set(layer._call_context_args)
    wrapper._call_has_context_arg = dict(layer._call_has_context_arg)


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
# pruned zeros, with one `where` op and no per-batch Python. The same subclass
# masks the gradient: every read that a TensorFlow op makes of a Keras variable
# goes through `Variable.__tf_tensor__`, so returning an identity whose
# gradient is zero at pruned positions makes `tape.gradient` (and so the
# optimizer, its clipping and its slots) see the gradient of the network
# without the pruned weights. Why private: Keras has no public hook on
# variable writes or reads. Checked: Keras 3.12.0 and 3.15.1 (TF 2.21),
# TensorFlow backend (`keras.src.backend.tensorflow.core.Variable`).
_MASKED_CLASSES: dict[type, type] = {}
# > 0 while `dense_gradients()` is active. Process-wide, not thread-local:
# `MirroredStrategy` traces each replica's function in a thread of its own.
_DENSE_GRADIENTS = [0]


@contextlib.contextmanager
def dense_gradients():
    """Within it, reads traced or run leave the gradient at pruned positions in place."""
    _DENSE_GRADIENTS[0] += 1
    try:
        yield
    finally:
        _DENSE_GRADIENTS[0] -= 1


def _masked_gradient(value, mask):
    """`value` unchanged; its gradient is zeroed where `mask` is False."""

    # The mask is read here and passed in as an input (not read inside the
    # gradient function), so that the gradient of a `tf.while_loop` (an RNN
    # reading its kernel at every time step) needs no capture from the
    # forward pass.
    # `x` is returned as it is: `tf.custom_gradient` already puts an identity op on its outputs.
    # The zero is a scalar that `tf.where` broadcasts (no `zeros_like` tensor per step).
    @tf.custom_gradient
    def identity(x, keep):
        def grad(dy):
            return tf.where(keep, dy, tf.zeros((), dy.dtype)), None

        return x, grad

    return identity(value, tf.convert_to_tensor(mask))


def _inside_while_loop() -> bool:
    """Whether ops are being traced in a `tf.while_loop` body of the current function.

    Only control-flow graphs are walked (cond branches, loop bodies), up to
    the first function graph: Keras' `steps_per_execution` loop calls the
    train step as a function of its own, so the gradient is taken inside it
    and is no while loop's gradient.
    """
    graph = tf.compat.v1.get_default_graph()
    flow = control_flow_v2_func_graphs
    while isinstance(graph, (flow.CondBranchFuncGraph, flow.WhileCondFuncGraph, flow.WhileBodyFuncGraph)):
        if isinstance(graph, flow.WhileBodyFuncGraph):
            return True
        graph = graph.outer_graph
    return False


def _captured_gradient(value, mask, capture, path: str):
    """`value` unchanged; its dense gradient is added to `capture.buffer` when `capture.armed()`.

    The gradient that continues upstream is zeroed where `mask` is False
    (`mask=None`: left dense). The write is a `tf.cond` inside the backward
    pass of the compiled step, so a step on which the capture is not armed
    costs one scalar comparison per read, and no host transfer. Whether it
    is armed is read in the forward pass and passed in as an input, like the
    mask (see `_masked_gradient`).

    A read inside a `tf.while_loop` (an RNN cell reading its kernel at every
    time step) is refused: the gradient of a while loop cannot write a
    resource that its forward body did not receive, and passing the buffer
    in makes TensorFlow refuse the loop's gradient. Why private: detecting the
    loop body needs TensorFlow's `WhileBodyFuncGraph` class.
    Checked: TensorFlow 2.21 (SimpleRNN and LSTM kernels).
    """
    if _inside_while_loop():
        capture.refuse()  # the hooks come off, so the model trains again without them
        raise ValueError(
            f"The dense gradient of '{path}' cannot be captured in the train step: the weight is read "
            "inside a loop (a recurrent cell). Use DynamicSparseTraining(gradient='drawn_batch', "
            "data=...) for this model."
        )
    keep = tf.convert_to_tensor(mask) if mask is not None else tf.ones(tf.shape(value), tf.bool)

    @tf.custom_gradient
    def identity(x, keep, armed):
        def grad(dy):
            def add():
                capture.buffer.assign_add(tf.cast(dy, capture.buffer.dtype))
                return tf.constant(True)

            tf.cond(armed, add, lambda: tf.constant(False))
            return tf.where(keep, dy, tf.zeros((), dy.dtype)), None, None

        return x, grad

    return identity(value, keep, capture.armed())


def _masked_class(base: type) -> type:
    """A subclass of the backend variable class whose writes (and gradients) are masked."""
    if base in _MASKED_CLASSES:
        return _MASKED_CLASSES[base]

    class MaskedVariable(base):
        def _direct_assign(self, value):
            # The variable's own dtype (`_dtype`), not `dtype`, which follows
            # the autocast scope: under mixed precision a float32 kernel must
            # not be rounded through float16 when it is written.
            # The zero is a scalar that `where` broadcasts: no `zeros_like` tensor per write.
            mask = self._tf_lottery_mask
            value = ops.convert_to_tensor(value, dtype=self._dtype)
            super()._direct_assign(ops.where(mask, value, ops.zeros((), dtype=value.dtype)))

        def __tf_tensor__(self, dtype=None, name=None):
            tensor = super().__tf_tensor__(dtype=dtype, name=name)
            if not tensor.dtype.is_floating:
                return tensor
            masking = self._tf_lottery_mask_gradients and not _DENSE_GRADIENTS[0]
            capture = getattr(self, "_tf_lottery_capture", None)
            if capture is not None:
                return _captured_gradient(
                    tensor, self._tf_lottery_mask if masking else None, capture, self.path
                )
            if not masking:
                return tensor
            return _masked_gradient(tensor, self._tf_lottery_mask)

    MaskedVariable.__name__ = f"Masked{base.__name__}"
    MaskedVariable.__qualname__ = MaskedVariable.__name__
    _MASKED_CLASSES[base] = MaskedVariable
    return MaskedVariable


def mask_writes(variable: keras.Variable, mask: keras.Variable, mask_gradients: bool = True) -> None:
    """Makes every later write to `variable` keep zeros where `mask` is False.

    With `mask_gradients`, reads of `variable` by TensorFlow ops also carry a
    gradient that is zero where `mask` is False. Swaps `variable`'s class the
    first time; a later call only changes the mask. The current value is not
    touched. Why private: see above.
    """
    if not has_masked_writes(variable):
        variable.__class__ = _masked_class(type(variable))
    variable._tf_lottery_mask = mask
    variable._tf_lottery_mask_gradients = bool(mask_gradients)


def capture_gradients(variable: keras.Variable, capture) -> None:
    """Makes reads of masked `variable` add their dense gradient to `capture.buffer`.

    `capture` has a `buffer` (a `tf.Variable` of `variable`'s shape), an
    `armed()` callable that returns a scalar bool tensor (the gradient is
    added only when it is True) and `refuse()`, called before a read that
    cannot be captured raises (see `_captured_gradient`). `None`
    removes the hook. Functions traced before the call do not capture: the
    caller retraces them (`Model.make_train_function(force=True)`).
    Why private: the hook sits in the masked class's `__tf_tensor__` (see
    above), the only place where the upstream, unmasked gradient of the
    training step's own batch exists.
    Checked: Keras 3.15.1 (TF 2.21), eager, `tf.function`, `jit_compile=True`
    and `MirroredStrategy` (an on-read, summed buffer).
    """
    if not has_masked_writes(variable):
        raise ValueError(f"Variable '{variable.path}' has no bound mask; prune the model first.")
    variable._tf_lottery_capture = capture


def read_unhooked(variable: keras.Variable):
    """The current value of `variable` read without the masked class's gradient hook.

    For writes of a variable back into itself (the post-step constraint), where
    the hook's gradient has no use and its ops would run in every step of a
    graph without XLA. Why private: the backend `tf.Variable` is
    `Variable._value`. Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return tf.convert_to_tensor(variable._value)


def has_masked_writes(variable: keras.Variable) -> bool:
    """Whether `mask_writes` has been applied to `variable`."""
    return type(variable) in _MASKED_CLASSES.values()


def masks_gradients(variable: keras.Variable) -> bool:
    """Whether reads of a masked `variable` zero the gradient at pruned positions."""
    return has_masked_writes(variable) and variable._tf_lottery_mask_gradients


def write_current_value(variable: keras.Variable) -> None:
    """Writes `variable`'s stored value back through its masked `_direct_assign`.

    Why private: `variable.value` follows the autocast scope (under mixed
    precision a float32 variable reads as float16); the stored value at full
    precision is the backing `tf.Variable`, `_value`. And Keras 3.12's
    `Variable.assign` converts to `variable.dtype`, which also follows the
    autocast scope, so it is bypassed: `_direct_assign` (masked, see
    `mask_writes`) converts to the stored dtype.
    Checked: Keras 3.12.0 (TF 2.16.2) and 3.15.1 (TF 2.21).
    """
    variable._direct_assign(variable._value)


def stored_dtype(variable: keras.Variable) -> str:
    """The dtype `variable` stores (not the autocast dtype it reads as).

    Why private: `Variable.dtype` follows the autocast scope; `_dtype` is the
    stored one. Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    return keras.backend.standardize_dtype(variable._dtype)


def calling_optimizer(max_depth: int = 6):
    """The Keras optimizer whose `apply` is running up the call stack, or `None`.

    Used by the masked variables' constraint, which `BaseOptimizer.apply`
    calls once per variable after the update (at trace time inside a compiled
    train step, every step when eager): it is the one point where a masked
    variable meets the optimizer that trains it, also in custom training
    loops. Why private: Keras passes the optimizer to no hook; the caller's
    frame (`self` of `BaseOptimizer.apply`) is the only way to learn it.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21): the constraint is called from
    `BaseOptimizer.apply` directly (depth 2 from the constraint's `__call__`).
    """
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.optimizers.Optimizer):
            return candidate
        frame = frame.f_back
    return None


def sibling_callbacks(callback: keras.callbacks.Callback, max_depth: int = 4) -> list:
    """The other callbacks of the `CallbackList` whose hook is calling `callback`, or `[]`.

    Used by `LotteryCallback.on_train_begin` to reset `EarlyStopping` and
    `ReduceLROnPlateau` at each round start (through their public
    `on_train_begin`) and to check a `BackupAndRestore` beside it. Why
    private: Keras gives a callback its model and params, never the list it
    sits in; the caller's frame (`self` of `CallbackList.on_train_begin`, which
    calls each callback in turn) is the only way to learn it. Checked: Keras
    3.12.0 and 3.15.1 (TF 2.21): `CallbackList.on_train_begin` calls each
    callback's `on_train_begin` directly (depth 2 from here).
    """
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return []
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, keras.callbacks.CallbackList) and any(
            c is callback for c in candidate.callbacks
        ):
            return [c for c in candidate.callbacks if c is not callback]
        frame = frame.f_back
    return []


def uses_ema(optimizer) -> bool:
    """Whether `optimizer` (or the optimizer a `LossScaleOptimizer` wraps) keeps an EMA."""
    inner = getattr(optimizer, "inner_optimizer", None)
    return bool(getattr(optimizer, "use_ema", False)) or (inner is not None and uses_ema(inner))


def variable_attribute(variable, name: str, default=None):
    """An attribute tf_lottery stored on a Keras variable (`_tf_lottery_*`), or `default`."""
    return getattr(variable, name, default)


def set_variable_attribute(variable, name: str, value) -> None:
    """Stores a `_tf_lottery_*` attribute on a Keras variable."""
    setattr(variable, name, value)


# -- compilation --------------------------------------------------------------


def set_jit_compile(model: keras.Model, value: bool) -> None:
    """Sets whether `model`'s train/test/predict steps are compiled with XLA, and drops traced ones.

    Why private: the public setter `Model.jit_compile = True` turns XLA off
    (with a `UserWarning`) whenever TensorFlow's op determinism is enabled,
    because "not all ops are supported by XLA with determinism" — a blanket
    veto. TensorFlow itself compiles XLA clusters deterministically when op
    determinism is on (`GetExecutableBuildOptions` in
    tensorflow/compiler/jit/device_compiler_client.cc sets
    `xla_gpu_exclude_nondeterministic_ops`), and an op that has no
    deterministic XLA kernel fails to compile with an error, never silently;
    the runner catches that error and falls back (`experiments/xla.py`). So
    the value is written to the attribute behind the property
    (`Trainer._jit_compile`), after the per-layer check the setter also makes
    (`supports_jit`), which the caller does. The steps traced so far
    (`train_function`, ...) are dropped so the next call retraces.
    Checked: Keras 3.12.0 and 3.15.1 (TF 2.21).
    """
    model._jit_compile = bool(value)
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


# keras_hub `TransformerEncoder` / `TransformerDecoder` sub-layer attributes, by role.
_TRANSFORMER_BLOCK_PARTS = {
    "self_attention": "_self_attention_layer",
    "self_attention_norm": "_self_attention_layer_norm",
    "cross_attention": "_cross_attention_layer",
    "cross_attention_norm": "_cross_attention_layer_norm",
    "intermediate": "_feedforward_intermediate_dense",
    "output": "_feedforward_output_dense",
    "feedforward_norm": "_feedforward_layer_norm",
}


def transformer_block_parts(block: keras.layers.Layer) -> dict:
    """The sub-layers of a built keras_hub `TransformerEncoder` / `TransformerDecoder`, by role.

    Roles: `self_attention`, `self_attention_norm`, `cross_attention`,
    `cross_attention_norm` (`None` without cross-attention, and on an
    encoder), `intermediate`, `output` (the feed-forward `Dense` layers, or
    the `PruneWrapper`s around them), `feedforward_norm`.

    Why private: keras_hub keeps a block's sub-layers in underscore attributes
    and offers no accessor; the heads and feed-forward units that pruning and
    `shrink` remove live in them.
    Checked: keras_hub 0.32.0 (Keras 3.15.1).
    """
    return {role: getattr(block, name, None) for role, name in _TRANSFORMER_BLOCK_PARTS.items()}


# -- TensorFlow Lite ----------------------------------------------------------


def tflite_schema():
    """The Python classes of TensorFlow Lite's flatbuffer schema (`ModelT`, `BuiltinOperator`, ...).

    Why private: no public API reads a converted model's tensors with their
    sparsity parameters (`SparsityParameters.blockMap`, `dimMetadata`).
    `tf.lite.experimental.Analyzer` prints operators and tensor sizes as
    text, without the block map; the `tflite` package on PyPI is a separate,
    lagging copy of the same generated code. TensorFlow ships the generated
    module as `tensorflow.lite.python.schema_py_generated` (used by its own
    `tensorflow/lite/tools/flatbuffer_utils.py`). Imported on first use.
    Checked: TensorFlow 2.21 (object API `ModelT.InitFromPackedBuf`).
    """
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated
