"""Shared helpers for tf_lottery tests."""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import pytest


class TestCase:
    """Base class: a fresh Keras session and fixed seeds for every test.

    It also checks that the test left op determinism off: only the command
    line may switch it on (it is process-wide, and while it is on Keras
    silently compiles without XLA even when asked for `jit_compile=True`).
    """

    @pytest.fixture(autouse=True)
    def _fresh_session(self):
        keras.backend.clear_session()
        keras.utils.set_random_seed(1234)
        yield
        keras.backend.clear_session()
        assert not op_determinism_enabled(), "the test left TensorFlow op determinism switched on"


def op_determinism_enabled() -> bool:
    """Whether `tf.config.experimental.enable_op_determinism()` is in effect."""
    # TF 2.21 has no public getter; tests may read TF internals, the package may not.
    from tensorflow.python.framework import config

    return bool(config.is_op_determinism_enabled())


@contextlib.contextmanager
def op_determinism():
    """Switches TensorFlow's op determinism on inside the block, and off again after it."""
    from tensorflow.python.framework import config

    config.enable_op_determinism()
    try:
        yield
    finally:
        config.disable_op_determinism()


def tiny_run_config(rewind_to: str = "0it", training_steps: str = "3ep", branches: str | None = None):
    """A default lottery config (`schema.defaults()`) shrunk to seconds: 1,000 MNIST-1D samples,
    a 32-32 MLP, one pruned level; op determinism and plots off, quiet."""
    from tf_lottery.experiments import schema

    config = schema.defaults()
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.hidden = (32, 32)
    config.train.batch_size = 50
    config.train.training_steps = training_steps
    config.pruning.rewind_to = rewind_to
    config.run.levels = 1
    if branches is not None:
        config.run.branches = branches
    config.run.deterministic = False  # process-wide; the CLI tests cover it
    config.run.plots = False
    config.run.verbose = 0
    return config


def mlp(input_dim: int = 40, hidden=(64, 32), classes: int = 10, name=None) -> keras.Model:
    """A small Sequential MLP with a named output layer."""
    layers = [keras.Input((input_dim,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    layers.append(keras.layers.Dense(classes, name="output"))
    return keras.Sequential(layers, name=name)


def toy_data(n: int = 256, input_dim: int = 40, classes: int = 10, seed: int = 0):
    """A learnable classification problem: labels from a random linear map."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, input_dim)).astype("float32")
    w = rng.normal(size=(input_dim, classes)).astype("float32")
    y = np.argmax(x @ w, axis=1).astype("int64")
    return x, y


def compile_classifier(model: keras.Model, optimizer=None, **kwargs) -> keras.Model:
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        **kwargs,
    )
    return model


def pruned_weights_are_zero(model) -> bool:
    """Every masked-out position of every PruneWrapper holds exactly +0.0."""
    from tf_lottery.core.walk import prune_wrappers

    for wrapper in prune_wrappers(model):
        for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
            value = keras.ops.convert_to_numpy(weight.value)
            pruned = value[~mask]
            if pruned.size and (np.any(pruned != 0.0) or np.any(np.signbit(pruned))):
                return False
    return True


_STRATEGY = None


def two_replica_strategy():
    """One `MirroredStrategy` over the 2 logical CPUs, shared by all tests.

    Shared because two strategies created in one process reuse collective
    instance keys, and the second one's all-reduce then meets the first
    one's shapes.
    """
    import tensorflow as tf

    global _STRATEGY
    if _STRATEGY is None:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
        assert len(devices) == 2, "tests/conftest.py should create 2 logical CPUs"
        _STRATEGY = tf.distribute.MirroredStrategy(devices)
    return _STRATEGY


class RoundStartProbe(keras.callbacks.Callback):
    """Records, at the start of each round, what the round starts from.

    Each entry of `starts` has `kernels` (the pruned weights), `values` (every
    non-mask variable of the pruning target), `masks` and `iterations` (the
    optimizer step).
    """

    def __init__(self, epochs_per_round: int):
        super().__init__()
        self.epochs_per_round = epochs_per_round
        self.starts = []

    def on_epoch_begin(self, epoch, logs=None):
        import tf_lottery as tfl
        from tf_lottery.core.walk import model_variables

        if epoch % self.epochs_per_round == 0:
            wrappers = tfl.prune_wrappers(self.model)
            self.starts.append(
                {
                    "kernels": [w.numpy().copy() for wr in wrappers for w in wr.pruned_weights],
                    "values": [v.numpy().copy() for v in model_variables(self.model)],
                    "masks": [m for wr in wrappers for m in wr.get_masks()],
                    "iterations": int(self.model.optimizer.iterations.numpy()),
                }
            )


def free_ports(count: int) -> list[int]:
    """`count` TCP ports on 127.0.0.1 that were free a moment ago."""
    import socket

    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_workers(commands: list[list[str]], cwd: str, timeout_s: float) -> list[str]:
    """Runs one process per command as the workers of a 127.0.0.1 cluster; returns their outputs.

    Worker `i` gets a `TF_CONFIG` naming every worker and itself as task `i`,
    no GPU, and `cwd` on its `PYTHONPATH`. Fails naming the first worker
    that did not exit 0; kills the others on a timeout.
    """
    import json
    import os
    import subprocess

    ports = free_ports(len(commands))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index, command in enumerate(commands):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            PYTHONPATH=cwd + os.pathsep + os.environ.get("PYTHONPATH", ""),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
        )
        env.pop("TF_LOTTERY_FAILPOINT", None)
        processes.append(
            subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout_s)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index} failed:\n{output[-4000:]}"
    return outputs
