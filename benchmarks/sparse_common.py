"""Shared set-up of the MNIST-1D sparse-training and pruning-at-init benchmarks.

The MNIST-1D MLP of the model registry (40-256-256-10, ReLU, Glorot
uniform), the canonical MNIST-1D (4,000 train / 1,000 test), Adam 1e-3,
batch 100, a fixed number of epochs; test accuracy at the end of training.
Results are one JSON file per (method, sparsity, seed) under `--out`, so a
comparison can be run in parts (`--methods`) and summarized at once.
"""

from __future__ import annotations

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.data.mnist1d import load_mnist1d  # noqa: E402
from tf_lottery.models import build_model  # noqa: E402

BATCH_SIZE = 100
LEARNING_RATE = 1e-3


def data():
    (x, y), _, (x_test, y_test) = load_mnist1d()
    return x, y, x_test, y_test


def model(seed: int) -> keras.Model:
    """A fresh prunable MNIST-1D MLP; the seed fixes its initialization."""
    keras.utils.set_random_seed(seed)
    return tfl.prunable(build_model("mnist1d_mlp", (40,), 10))


def compile_model(net: keras.Model, steps_per_execution: int) -> keras.Model:
    net.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    net.optimizer.build(net.trainable_variables)
    return net


def train(net, x, y, epochs: int, seed: int, callbacks=()) -> float:
    """Trains with a seeded Keras shuffle; returns the wall time."""
    keras.utils.set_random_seed(seed + 10_000)
    began = time.time()
    net.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, shuffle=True, callbacks=list(callbacks))
    return time.time() - began


def accuracy(net, x, y) -> float:
    logits = np.asarray(net(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


class _LevelHook(keras.callbacks.Callback):
    """Calls `on_level(level, model)` when a level's training ends, before it is pruned."""

    def __init__(self, on_level):
        super().__init__()
        self.on_level, self.level = on_level, 0

    def on_train_end(self, logs=None):
        self.on_level(self.level, self.model)
        self.level += 1


def imp(net, x, y, epochs, seed, levels, rate=0.2, last_target=None, on_level=None):
    """Global IMP with rewinding to initialization (weights and optimizer), by `tfl.LotteryCallback`.

    Level 0 trains the dense network; level l prunes `rate` of the survivors
    and trains from the rewound initialization; with `last_target`, the rate
    is `tfl.rate_per_round(last_target, levels)` and the last level lands on
    it exactly. `on_level(level, net)` sees every trained level. One `fit`
    per level, each with the same seeded shuffle (`train`).
    """
    if last_target is not None:
        lottery = tfl.LotteryCallback(
            levels + 1, target_sparsity=last_target, one_round_per_fit=True, verbose=0
        )
    else:
        lottery = tfl.LotteryCallback(levels + 1, rate, one_round_per_fit=True, verbose=0)
    # The hook comes first: Keras calls callbacks in order, so it sees each level before it is pruned.
    callbacks = ([_LevelHook(on_level)] if on_level is not None else []) + [lottery]
    for _ in range(levels + 1):
        train(net, x, y, epochs, seed, callbacks=callbacks)


def write(out: str, name: str, record: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)


def read_all(out: str) -> list[dict]:
    if not os.path.isdir(out):
        return []
    records = []
    for name in sorted(os.listdir(out)):
        if name.endswith(".json"):
            with open(os.path.join(out, name)) as handle:
                records.append(json.load(handle))
    return records


def describe(values) -> str:
    """`mean ± std (min-max, n)` in percent."""
    values = [100.0 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f} (n=1)"
    return (
        f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} "
        f"({min(values):.1f}-{max(values):.1f}, n={len(values)})"
    )
