"""`Network`: the config's model built, initialised and compiled for a replicate."""

import numpy as np
import tensorflow as tf

from tests.testing import tiny_run_config
from tf_lottery.data.registry import load_dataset
from tf_lottery.experiments.network import Network, build_network
from tf_lottery.experiments.run_services import RunServices


def _services(data, seed):
    strategy = tf.distribute.get_strategy()
    return RunServices(None, data, print, None, strategy, replicate=0, seed=seed, data_seed=seed)


def test_build_draws_the_weights_from_the_replicate_seed_and_compiles_the_run_settings():
    config = tiny_run_config()
    config.run.steps_per_execution = 3
    config.run.jit_compile = False
    data = load_dataset(config.dataset)
    network = Network(config)
    a, again, other = (network.build(_services(data, seed)) for seed in (0, 0, 1))
    for x, y in zip(a.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a.get_weights(), other.get_weights()))
    assert int(a.steps_per_execution) == 3 and not a.jit_compile and a.optimizer.built
    # The weights are those `build_network` draws from the seed: compiling changes none.
    for x, y in zip(a.get_weights(), build_network(config, data, 0).get_weights()):
        np.testing.assert_array_equal(x, y)


def test_compiled_like_another_model_takes_its_loss_steps_and_xla_setting():
    config = tiny_run_config()
    data = load_dataset(config.dataset)
    network = Network(config)
    model = network.build(_services(data, 0))
    model.steps_per_execution = 7
    model.jit_compile = False
    twin = network.compiled(data, 0, tf.distribute.get_strategy(), like=model)
    assert twin.loss is model.loss and int(twin.steps_per_execution) == 7 and not twin.jit_compile
