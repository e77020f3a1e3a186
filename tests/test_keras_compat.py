"""Private Keras / TensorFlow internals live in `tf_lottery/_keras_compat.py` only.

Everywhere else in the package, a scan of the syntax tree finds no import of
(or dotted reference to) `keras.src` or `tensorflow.python`, no underscore
attribute read on anything but `self` / `cls` or one of tf_lottery's own
modules, no `getattr(x, "_private")`, and no `__class__` swap. The compat
functions themselves are checked on small Keras models.
"""

from __future__ import annotations

import ast
import pathlib
import re

import keras
import numpy as np
import pytest

from tests.testing import TestCase
from tf_lottery import _keras_compat

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tf_lottery"
COMPAT = PACKAGE / "_keras_compat.py"

_PRIVATE_MODULE = re.compile(r"^(keras\.src|tensorflow\.python)(\.\w+)*$")
_ATTRIBUTE_FUNCTIONS = {"getattr", "hasattr", "setattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`tf.python.ops` -> `"tensorflow.python.ops"` after `import tensorflow as tf`."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _own_module_names(tree: ast.AST) -> set[str]:
    """Names the file binds to tf_lottery modules (whose `_helpers` are not Keras')."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level > 0 or (node.module or "").startswith("tf_lottery")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tf_lottery":
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def _is_exempt_owner(node: ast.AST, own: set[str]) -> bool:
    return isinstance(node, ast.Name) and (node.id in ("self", "cls") or node.id in own)


def private_uses(source: str, filename: str = "<source>") -> list[str]:
    """`file:line: what` for every use of a private Keras / TensorFlow internal in `source`."""
    tree = ast.parse(source, filename)
    own = _own_module_names(tree)
    aliases = _module_aliases(tree)
    # Only the outermost attribute of a dotted chain is reported.
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    found = []

    def report(node, what):
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _PRIVATE_MODULE.match(alias.name):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if _PRIVATE_MODULE.match(f"{node.module}.{alias.name}"):
                    report(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node, aliases)
            if dotted and id(node) not in inner and _PRIVATE_MODULE.match(dotted):
                report(node, dotted)
            if node.attr == "__class__" and isinstance(node.ctx, ast.Store):
                report(node, f"{ast.unparse(node)} = ... (class swap)")
            elif _is_private(node.attr) and not _is_exempt_owner(node.value, own):
                report(node, ast.unparse(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _ATTRIBUTE_FUNCTIONS and len(node.args) >= 2:
                owner, name = node.args[0], node.args[1]
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    if _is_private(name.value) and not _is_exempt_owner(owner, own):
                        report(node, ast.unparse(node))
            if node.func.id == "__import__" and node.args:
                name = node.args[0]
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    if _PRIVATE_MODULE.match(name.value):
                        report(node, ast.unparse(node))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # `importlib.import_module("keras.src....")` and the like.
            if _PRIVATE_MODULE.match(node.value):
                report(node, repr(node.value))
    return found


def _package_files():
    return [path for path in sorted(PACKAGE.rglob("*.py")) if path != COMPAT]


def test_no_private_keras_or_tensorflow_outside_compat():
    problems = []
    for path in _package_files():
        problems += private_uses(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not problems, "Move these into tf_lottery/_keras_compat.py:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(model):\n    return model._layers\n", "x.py:2: model._layers"),
        ("from keras.src.x import y\n", "x.py:1: from keras.src.x import y"),
        ("import tensorflow.python.framework.config\n", "x.py:1: import tensorflow.python"),
        ("import tensorflow as tf\nx = tf.python.ops\n", "x.py:2: tensorflow.python.ops"),
        ("from keras import src\n", "x.py:1: from keras import src"),
        ("import keras\nx = keras.src.utils\n", "x.py:2: keras.src.utils"),
        ("def f(v):\n    v.__class__ = int\n", "x.py:2: v.__class__ = ... (class swap)"),
        (
            "def f(m):\n    return getattr(m, '_compile_loss', None)\n",
            "x.py:2: getattr(m, '_compile_loss', None)",
        ),
        ("import importlib\nm = importlib.import_module('keras.src.losses')\n", "x.py:2: 'keras.src.losses'"),
        (
            "class A:\n    def f(self):\n        return super()._direct_assign(1)\n",
            "x.py:3: super()._direct_assign",
        ),
    ],
)
def test_the_scan_catches_a_private_use(source, expected):
    problems = private_uses(source, "x.py")
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_the_scan_allows_self_and_tf_lotterys_own_modules():
    source = (
        "from tf_lottery.utils import validation\n"
        "import tf_lottery.core.walk as walk\n"
        "class A:\n"
        "    def f(self):\n"
        "        return self._x, validation._check(1), walk._helper, type(self).__name__\n"
    )
    assert private_uses(source, "x.py") == []


def test_compat_imports_only_keras_tensorflow_and_numpy():
    tree = ast.parse(COMPAT.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "contextlib", "sys", "keras", "tensorflow", "numpy"}, roots


class _Block(keras.layers.Layer):
    """A custom layer with a nested sub-layer and a variable of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.Sequential([keras.layers.Dense(3, name="deep")], name="inner_seq")
        self.head = keras.layers.Dense(2, name="head")

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return self.head(self.inner(x)) * self.scale


class TestCompatFunctions(TestCase):
    def _block_model(self):
        inputs = keras.Input((4,))
        block = _Block(name="block")
        model = keras.Model(inputs, block(inputs))
        return model, block

    def test_flatten_layers_finds_nested_layers(self):
        model, block = self._block_model()
        names = [layer.name for layer in _keras_compat.flatten_layers(model)]
        assert names[0] == model.name
        assert {"block", "inner_seq", "deep", "head"} <= set(names)
        without_self = _keras_compat.flatten_layers(model, include_self=False)
        assert model not in without_self
        direct = _keras_compat.flatten_layers(block, include_self=False, recursive=False)
        assert [layer.name for layer in direct] == ["inner_seq", "head"]

    def test_child_layers_of_a_plain_layer(self):
        _, block = self._block_model()
        assert [layer.name for layer in _keras_compat.child_layers(block)] == ["inner_seq", "head"]

    def test_own_variables_leave_out_sub_layers(self):
        _, block = self._block_model()
        assert [v.name for v in _keras_compat.own_variables(block)] == ["scale"]
        assert len(block.weights) == 5

    def test_is_functional(self):
        model, block = self._block_model()
        assert _keras_compat.is_functional(model)
        assert not _keras_compat.is_functional(keras.Sequential([keras.layers.Dense(1)]))
        assert not _keras_compat.is_functional(block)

    def test_graph_nodes_run_a_functional_model_as_its_call_does(self):
        inputs = keras.Input((4,), name="x")
        hidden = keras.layers.Dense(3, name="a")(inputs)
        hidden = keras.layers.Dropout(0.5, name="drop")(hidden)
        outputs = keras.layers.Add(name="add")([hidden, keras.layers.Dense(3, name="b")(inputs)])
        model = keras.Model(inputs, outputs)
        graph = _keras_compat.functional_graph(model)
        assert graph is model
        nodes = _keras_compat.graph_nodes(graph)
        assert [n.operation.name for n in nodes][-1] == "add" and len(nodes) == 4
        x = np.arange(8, dtype="float64").reshape(2, 4)  # converted to the input's float32
        values = dict(
            zip(_keras_compat.graph_input_ids(graph), _keras_compat.graph_input_values(model, graph, x))
        )
        for node in nodes:
            values.update(zip(node.outputs, node.call(values)))  # training=False: dropout is off
        (out_id,) = _keras_compat.graph_output_ids(graph)
        np.testing.assert_allclose(values[out_id], model(x, training=False), rtol=1e-6)
        sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        assert len(_keras_compat.graph_nodes(_keras_compat.functional_graph(sequential))) == 1
        _, block = self._block_model()
        assert _keras_compat.functional_graph(block) is None

    def test_keras_history_and_snake_case(self):
        inputs = keras.Input((4,), name="pixels")
        dense = keras.layers.Dense(2, name="logits")
        outputs = dense(inputs)
        assert _keras_compat.keras_history_operation(outputs) is dense
        assert _keras_compat.keras_history_operation(inputs).name == "pixels"
        assert _keras_compat.to_snake_case("MultiHeadAttention") == "multi_head_attention"

    def test_graph_calls_list_each_call_inputs_first_and_name_raw_ops(self):
        inputs = keras.Input((3,))
        dense = keras.layers.Dense(2, name="d")
        outputs = dense(inputs) + dense(inputs)
        model = keras.Model(inputs, outputs)
        graph_inputs, graph_outputs, calls = _keras_compat.graph_calls(model)
        assert graph_inputs == [inputs] and graph_outputs == [outputs]
        assert [op.name for op, *_ in calls][:2] == ["d", "d"]
        add, add_inputs, add_outputs, arguments = calls[-1]
        assert _keras_compat.raw_op_name(add) == "numpy.Add"
        assert _keras_compat.raw_op_name(dense) is None
        assert add_outputs == [outputs] and len(add_inputs) == 2 and len(arguments) == 2
        sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="s")])
        assert [op.name for op, *_ in _keras_compat.graph_calls(sequential)[2]] == ["s"]
        assert _keras_compat.graph_calls(keras.Sequential([keras.layers.Dense(2)])) is None

    def test_input_signature_of_a_subclassed_model(self):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = keras.layers.Dense(2)

            def call(self, x):
                return self.dense(x)

        model = Net()
        model(np.zeros((1, 4), "float32"))
        specs = keras.tree.flatten(_keras_compat.input_signature(model))
        assert [tuple(s.shape) for s in specs] == [(None, 4)]

    def test_replace_sub_layer_keeps_the_position_and_the_checkpoint_dependency(self):
        _, block = self._block_model()
        old = block.head
        new = keras.layers.Dense(2, name="new_head")
        _keras_compat.replace_sub_layer(block, old, new)
        assert [layer.name for layer in _keras_compat.child_layers(block)] == ["inner_seq", "new_head"]
        # tf.train.Checkpoint follows the named dependency: it must now be `new`.
        assert block._trackable_children()["head"] is new
        names = [name for name, _ in _keras_compat.instance_attributes(block)]
        assert "head" in names and "_layers" not in names and "_tracker" not in names

    def test_unlocked_tracker_lets_a_built_layer_add_weights(self):
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        with pytest.raises(ValueError):
            layer.add_weight(shape=(), name="late")
        with _keras_compat.unlocked_tracker(layer):
            layer.add_weight(shape=(), name="late")
        assert layer.weights[-1].name == "late"
        with pytest.raises(ValueError):
            layer.add_weight(shape=(), name="later")

    def test_loss_scaling_is_identity_without_replicas(self):
        value = keras.ops.convert_to_tensor(3.0)
        assert float(_keras_compat.scale_loss_for_distribution(value)) == 3.0
        assert float(_keras_compat.unscale_loss_for_distribution(value)) == 3.0

    def test_compiled_loss_and_additional_loss(self):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        assert not _keras_compat.has_compiled_loss(model)
        model.compile(loss="mse")
        assert _keras_compat.has_compiled_loss(model)
        total = _keras_compat.aggregate_additional_loss(model, keras.ops.convert_to_tensor([1.0, 2.0]))
        assert float(total) == 3.0

    def test_optimizer_slots_line_up_with_variables(self):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        optimizer = keras.optimizers.Adam()
        optimizer.build(model.trainable_variables)
        assert _keras_compat.optimizer_trainable_variables(optimizer) == model.trainable_variables
        bias = model.layers[0].bias
        assert _keras_compat.optimizer_variable_index(optimizer, bias) == 1
        slots = _keras_compat.optimizer_slot_lists(optimizer)
        assert set(slots) == {"_momentums", "_velocities"}
        assert all(tuple(values[1].shape) == (2,) for values in slots.values())

    def test_mask_writes_zero_every_write(self):
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
        kernel = layer.kernel
        plain = type(kernel)
        assert _keras_compat.is_initialized(kernel)
        assert _keras_compat.variable_distribute_strategy(kernel.value) is None
        mask = keras.Variable(np.array([[True, False]] * 3), dtype="bool", trainable=False)
        _keras_compat.mask_writes(kernel, mask)
        assert _keras_compat.has_masked_writes(kernel)
        kernel.assign(np.full((3, 2), -1.5, "float32"))
        np.testing.assert_array_equal(kernel.numpy(), [[-1.5, 0.0]] * 3)
        assert not np.signbit(kernel.numpy()[:, 1]).any()
        assert isinstance(kernel, plain) and type(kernel) is not plain

    def test_sibling_callbacks_are_the_rest_of_the_fit_callback_list(self):
        class Probe(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.siblings = _keras_compat.sibling_callbacks(self)

        probe, stop = Probe(), keras.callbacks.EarlyStopping()
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        model.fit(np.zeros((4, 3)), np.zeros((4, 1)), epochs=1, callbacks=[stop, probe], verbose=0)
        assert probe.siblings[0] is stop and isinstance(probe.siblings[1], keras.callbacks.History)
        probe.on_train_begin()  # called by hand, outside a CallbackList
        assert probe.siblings == []
