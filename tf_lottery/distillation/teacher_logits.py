"""Teacher logits computed once and streamed with the data (cached soft labels).

When the training inputs are the same every epoch (no augmentation), the
frozen teacher's logits for an example never change, so they are computed
once with `teacher.predict` and gathered into each batch with its examples. The distiller then
runs no teacher forward pass at all in its train step, and a knowledge-
distillation epoch costs about what a plain epoch costs.

A cached batch is `({"inputs": x, "teacher_logits": t}, y)`: the logits
travel with the inputs (not the labels), so the compiled metrics still see
plain `y`, and `fit()`, `evaluate()` and `predict()` need no changes, under
`tf.distribute` too (the dict is split across replicas like any input).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

INPUTS_KEY = "inputs"
TEACHER_LOGITS_KEY = "teacher_logits"


def split_cached_inputs(x):
    """`(student inputs, cached teacher logits or None)` from a batch's `x`."""
    if isinstance(x, dict) and set(x) == {INPUTS_KEY, TEACHER_LOGITS_KEY}:
        return x[INPUTS_KEY], x[TEACHER_LOGITS_KEY]
    return x, None


def teacher_logits(teacher: keras.Model, x, batch_size: int = 1024) -> np.ndarray:
    """The teacher's inference-mode logits for every example of `x`, as float32."""
    logits = teacher.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(logits, dtype=np.float32)


def array_batches(arrays, batch_size: int, *, shuffle: bool = True, seed=None, drop_remainder: bool = False):
    """Batches of in-memory `arrays` (any nested structure), gathered by index.

    One `tf.gather` per batch and tensor, not one slice per example: the
    input pipeline stays far cheaper than the train step. With `shuffle`,
    the order is drawn afresh every epoch (every iteration of the dataset).
    """
    tensors = tf.nest.map_structure(tf.constant, arrays)
    count = len(tf.nest.flatten(arrays)[0])
    order = tf.data.Dataset.range(count)
    if shuffle:
        order = order.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    order = order.batch(batch_size, drop_remainder=drop_remainder)
    gather = lambda index: tf.nest.map_structure(lambda tensor: tf.gather(tensor, index), tensors)
    return order.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def with_teacher_logits(
    x,
    y,
    teacher: keras.Model,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
    augmented: bool = False,
    predict_batch_size: int = 1024,
) -> tf.data.Dataset:
    """Batches `({"inputs": x, "teacher_logits": t}, y)` with the teacher's logits cached.

    The teacher's logits are computed once, in inference mode (as the
    distiller calls it), for every example, and gathered with the examples
    of each batch. Only valid when the pipeline feeds the examples
    unchanged: with augmentation the teacher must see each augmented batch,
    so feed plain `(x, y)` batches to the `KDDistiller` instead and it runs
    the teacher in the step.

    Args:
        x: NumPy array (or nested structure of arrays) of student inputs,
            first axis the examples.
        y: NumPy array of labels, one per example.
        teacher: The trained `keras.Model` whose logits are cached.
        batch_size: int. Global batch size.
        shuffle: bool. Reshuffle the examples every epoch. Defaults to `True`.
        seed: Optional int. Shuffling seed.
        drop_remainder: bool. Drop the last partial batch; needed for static
            shapes on TPUs. Defaults to `False`.
        augmented: bool. Whether the training pipeline augments its inputs.
            `True` is refused. Defaults to `False`.
        predict_batch_size: int. Batch size of the one-off `teacher.predict`.
            Defaults to `1024`.

    Returns:
        A `tf.data.Dataset` of batches, for `fit()`.

    Example:

    ```python
    train = with_teacher_logits(x_train, y_train, teacher, batch_size=128, seed=0)
    distiller.fit(train, epochs=10)
    ```
    """
    if augmented:
        raise ValueError(
            "Invalid value for argument `augmented`: cached teacher logits need a pipeline "
            "that feeds every example unchanged, expected augmented=False. Received: "
            "augmented=True. With augmentation, train the KDDistiller on plain (x, y) "
            "batches: it then runs the teacher on each augmented batch."
        )
    count = len(keras.tree.flatten(x)[0])
    if len(y) != count:
        raise ValueError(
            f"Invalid value for argument `y`: expected one label per example of `x` ({count}). "
            f"Received {len(y)} labels."
        )
    logits = teacher_logits(teacher, x, batch_size=predict_batch_size)
    if len(logits) != count:
        raise ValueError(
            f"Invalid value for argument `teacher`: expected one row of logits per example "
            f"({count}). Received {len(logits)} rows from teacher '{teacher.name}'."
        )
    features = {INPUTS_KEY: x, TEACHER_LOGITS_KEY: logits}
    return array_batches((features, y), batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)
