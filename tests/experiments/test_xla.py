"""XLA in the runner: on by default, under op determinism too, with a fallback that names the op."""

import warnings

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from tests.testing import op_determinism
from tf_lottery.experiments import schema, trainer, xla
from tf_lottery.experiments.runner import run_levels

# The runner's XLA default is what these tests check (tests/conftest.py turns it off elsewhere).
pytestmark = pytest.mark.xla


class PythonOp(keras.layers.Layer):
    """Doubles its input through `tf.numpy_function`, which XLA cannot compile."""

    def call(self, x):
        y = tf.numpy_function(lambda a: a * 2, [x], x.dtype)
        y.set_shape(x.shape)
        return y


class NoJit(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False  # Keras' own flag (an instance attribute set by Layer.__init__)

    def call(self, x):
        return x


def _model(middle=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, name="hidden")(inputs if middle is None else middle(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x[:, :2] * 3.0)).batch(8)


def test_apply_turns_xla_on_even_under_op_determinism():
    with op_determinism():
        model = _model()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "Proceeding with jit_compile=False" from Keras
            assert xla.apply(model, True) is True
        assert model.jit_compile is True
        trainer._KerasLoop(model).fit(_data())
        assert model.jit_compile is True  # it compiled and ran
        assert xla.apply(model, False) is False and model.jit_compile is False


def test_xla_training_is_deterministic_and_close_to_plain_graphs():
    results = []
    with op_determinism():
        for jit in (True, True, False):
            model = _model(seed=3)
            xla.apply(model, jit)
            for _ in range(3):
                trainer._KerasLoop(model).fit(_data())
            results.append([w.numpy() for w in model.weights])
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)  # XLA run twice: bit-identical
    for a, b in zip(results[0], results[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # XLA vs graphs: rounding only


def test_an_op_xla_cannot_compile_falls_back_with_one_warning_naming_it():
    model = _model(PythonOp(name="python_op"), seed=1)
    assert xla.apply(model, True)
    reference = _model(PythonOp(name="python_op"), seed=1)
    xla.apply(reference, False)
    with pytest.warns(UserWarning, match=r"XLA cannot compile op 'PyFunc' in layer 'python_op'") as caught:
        loss = trainer._KerasLoop(model).fit(_data())
    assert len([w for w in caught if "XLA cannot compile" in str(w.message)]) == 1
    assert model.jit_compile is False
    # The failed call trained nothing: the fallback's result equals a run without XLA.
    assert loss == pytest.approx(trainer._KerasLoop(reference).fit(_data()), rel=1e-6)
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_a_layer_declaring_no_jit_keeps_xla_off_with_a_warning():
    model = _model(NoJit(name="no_jit"))
    with pytest.warns(UserWarning, match=r"layer\(s\) \['no_jit'\].*supports_jit = False"):
        assert xla.apply(model, True) is False
    assert model.jit_compile is False


def test_other_errors_are_not_swallowed():
    model = _model()
    xla.apply(model, True)
    assert not xla.fall_back(model, ValueError("XLA_CPU_JIT"))  # not a TensorFlow error
    assert not xla.fall_back(model, tf.errors.InvalidArgumentError(None, None, "Incompatible shapes"))
    assert not xla.fall_back(model, tf.errors.ResourceExhaustedError(None, None, "OOM on XLA_GPU_JIT"))
    xla.apply(model, False)
    assert not xla.fall_back(model, tf.errors.InvalidArgumentError(None, None, "XLA_CPU_JIT"))


def _tiny_config():
    config = schema.defaults()
    config.dataset.num_samples = 600
    config.dataset.validation = 100
    config.model.hidden = (16,)
    config.train.batch_size = 50
    config.train.training_steps = "2ep"
    config.run.levels = 1
    config.run.branches = ""
    config.run.deterministic = False
    config.run.plots = False
    config.run.verbose = 0
    return config


def test_the_runner_trains_with_xla_by_default(tmp_path, monkeypatch):
    seen = []
    apply = xla.apply
    monkeypatch.setattr(
        xla, "apply", lambda model, requested: seen.append(apply(model, requested)) or seen[-1]
    )
    assert schema.defaults().run.jit_compile is True
    run_levels(_tiny_config(), str(tmp_path / "on"))
    config = _tiny_config()
    config.run.jit_compile = False
    run_levels(config, str(tmp_path / "off"))
    assert seen == [True, False]


def test_jit_compile_must_be_a_bool():
    config = _tiny_config()
    with config.ignore_type():
        config.run.jit_compile = "yes"
    with pytest.raises(ValueError, match=r"`config.run.jit_compile`: expected True or False. Received: "):
        schema.validate(config)
    assert isinstance(config, ml_collections.ConfigDict)


def test_xla_is_used_on_one_device_only():
    from tf_lottery.experiments import strategy

    assert strategy.jit_compile("default", True) is True
    assert strategy.jit_compile("default", False) is False
    for name in ("mirrored", "multi_worker", "tpu"):
        assert strategy.jit_compile(name, True) is False
