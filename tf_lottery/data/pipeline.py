"""`ArrayPipeline`: deterministic, resumable `tf.data` input from in-memory arrays.

Every training epoch is a pure function of `(seed, epoch)`: the example
order is a NumPy permutation seeded by both, and the augmentation draws use
stateless random ops seeded by `(seed, epoch, batch)`. So a run that stops
after any batch and restarts with `train_batches(epoch, skip=batch)` sees
exactly the batches an uninterrupted run would have seen.

Small datasets (MNIST-1D, MNIST, Fashion-MNIST, CIFAR-10/100; at most a few
hundred MB as uint8) are held in memory whole, which is the fastest cache
there is; batches are gathered, normalized and augmented on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

SPLITS = ("train", "validation", "test")
# Training batches without augmentation are gathered and normalized for the rest of an epoch at
# once when that takes at most this much memory (MNIST-1D: 0.6 MB an epoch); larger epochs and
# augmented images go through a `map` per batch.
TRAIN_IN_MEMORY_BYTES = 64 * 2**20


def pad_and_crop(images: tf.Tensor, seed: tf.Tensor, padding: int = 4) -> tf.Tensor:
    """Zero-pads a batch by `padding` pixels and crops each image back at a random offset."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed=seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips each image of a batch left-right with probability 1/2."""
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], seed=seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


@dataclass
class ArrayPipeline:
    """Train/validation/test arrays with deterministic per-epoch batching.

    Attributes:
        name: str. Dataset name.
        x_train, y_train, x_val, y_val, x_test, y_test: NumPy arrays
            (images may stay uint8; they are normalized per batch).
        num_classes: int.
        mean, std: Per-channel normalization `(x / scale - mean) / std`, or
            `None` to feed the values as they are.
        scale: float. Divides the raw values first (255 for uint8 images).
        augment: bool. Random flip and 4-pixel pad-and-crop on training
            batches (images only).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    scale: float = 1.0
    augment: bool = False

    def __post_init__(self):
        if self.augment and np.ndim(self.x_train) != 4:
            raise ValueError(
                f"Invalid value for `config.dataset.augment`: flip and pad-and-crop need images "
                f"(N, H, W, C); dataset '{self.name}' has examples of shape {self.input_shape}."
            )
        self._train_x = tf.constant(self.x_train)
        self._train_y = tf.constant(self.y_train)

    @property
    def input_shape(self) -> tuple:
        return tuple(np.shape(self.x_train)[1:])

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    def size(self, split: str) -> int:
        return len({"train": self.x_train, "validation": self.x_val, "test": self.x_test}[split])

    def steps_per_epoch(self, batch_size: int) -> int:
        steps = self.num_train // batch_size
        if steps < 1:
            raise ValueError(
                f"Invalid value for `config.train.batch_size`: {batch_size} is larger than the "
                f"training set of '{self.name}' ({self.num_train} examples)."
            )
        return steps

    def _normalize(self, x):
        x = tf.cast(x, tf.float32)
        if self.scale != 1.0:
            x = x / self.scale
        if self.mean is not None:
            x = (x - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        return x

    def train_batches(
        self, epoch: int, batch_size: int, seed: int, skip: int = 0, extra: np.ndarray | None = None
    ) -> tf.data.Dataset:
        """The batches of training epoch `epoch` (drop remainder), from batch `skip` on.

        With `extra` (one row per training example, e.g. a teacher's cached
        logits), each batch is `((x, extra rows of its examples), y)`.
        """
        if extra is not None and len(extra) != self.num_train:
            raise ValueError(
                f"Invalid value for argument `extra`: expected one row per training example "
                f"({self.num_train}). Received: an array of shape {np.shape(extra)}."
            )
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(self.num_train)
        steps = self.steps_per_epoch(batch_size)
        indices = order[: steps * batch_size].reshape(steps, batch_size)
        if not self.augment and self._gathered_bytes(indices[int(skip) :]) <= TRAIN_IN_MEMORY_BYTES:
            # The same gather and normalization as `load` below, for all the batches at once:
            # element-wise ops give the same values, and an epoch's dataset is then built in
            # about a millisecond instead of tracing a map function (tens of ms per epoch).
            rest = indices[int(skip) :]
            x = self._normalize(tf.gather(self._train_x, rest))
            y = tf.gather(self._train_y, rest)
            if extra is not None:  # only the rows of these batches, not the whole array
                x = (x, tf.constant(np.asarray(extra)[rest]))
            return tf.data.Dataset.from_tensor_slices((x, y)).prefetch(tf.data.AUTOTUNE)
        rows = None if extra is None else tf.constant(extra)
        base = np.int64(seed) * 1_000_003 + np.int64(epoch)

        def load(batch_index, index):
            x = self._normalize(tf.gather(self._train_x, index))
            y = tf.gather(self._train_y, index)
            if self.augment:
                x = random_flip(x, tf.stack([base, 2 * batch_index]))
                x = pad_and_crop(x, tf.stack([base, 2 * batch_index + 1]))
            if rows is not None:
                return (x, tf.gather(rows, index)), y
            return x, y

        dataset = tf.data.Dataset.from_tensor_slices(indices).enumerate().skip(int(skip))
        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def _gathered_bytes(self, indices: np.ndarray) -> int:
        """Bytes of the normalized (float32) training examples at `indices`."""
        return int(indices.size) * int(np.prod(self.input_shape, dtype=np.int64)) * 4

    def eval_batches(self, split: str, batch_size: int = 1000) -> tf.data.Dataset | None:
        """Batches of the `"validation"` or `"test"` split (None if it is empty)."""
        if split not in SPLITS:
            raise ValueError(
                f"Invalid value for argument `split`: expected one of {SPLITS}. Received: {split!r}."
            )
        x, y = {"train": (self.x_train, self.y_train), "validation": (self.x_val, self.y_val)}.get(
            split, (self.x_test, self.y_test)
        )
        if len(x) == 0:
            return None
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        return dataset.map(lambda a, b: (self._normalize(a), b)).cache().prefetch(tf.data.AUTOTUNE)
