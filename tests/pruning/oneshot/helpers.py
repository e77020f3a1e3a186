"""Small models and data shared by the one-shot tests."""

from __future__ import annotations

import keras
import numpy as np

import tf_lottery as tfl


def correlated_inputs(n=96, features=16, seed=0) -> np.ndarray:
    """Inputs whose features differ in scale and are correlated (what makes the methods differ)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(features, features)) * 0.5 + np.eye(features)
    scales = np.exp(rng.normal(size=features))
    return (rng.normal(size=(n, features)) @ mixing * scales).astype("float32")


def one_dense(features=16, units=8, dtype="float32", seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features,), dtype=dtype)
    outputs = keras.layers.Dense(units, dtype=dtype, name="dense")(inputs)
    return tfl.prunable(keras.Model(inputs, outputs))


def kernel_and_mask(model, index=0):
    wrapper = tfl.prune_wrappers(model)[index]
    return wrapper.pruned_weights[0].numpy(), wrapper.get_masks()[0]


def groups_alive(matrix_alive: np.ndarray, m: int) -> np.ndarray:
    """Alive count of every group of `m` consecutive inputs of each output, `(inputs, outputs)` layout."""
    inputs, outputs = matrix_alive.shape
    return matrix_alive.reshape(inputs // m, m, outputs).sum(axis=1)
