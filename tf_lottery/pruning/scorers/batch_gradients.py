"""Gradients of a model's loss on one batch, also under `tf.distribute`.

Used for scores that need `dL/dw` (SNIP, GraSP) and for RigL's growth
criterion. The forward pass runs in training mode by default, as the papers
do, but the model's non-trainable state (BatchNorm moving statistics) is put
back afterwards, so computing a score never changes the model.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from tf_lottery import _keras_compat
from tf_lottery.core.masked_variable import dense_gradients
from tf_lottery.core.walk import model_variables


def loss_fn(model, loss=None):
    """`f(x, y, y_pred, training) -> scalar`: the batch mean of `loss`, or the compiled loss.

    Keras `Loss` objects (and so `compute_loss`) divide their value by the
    number of replicas inside `tf.distribute`; that is undone here, so the
    value is the mean over the replica's own batch in every case.
    """
    if loss is not None:
        function = keras.losses.get(loss)
        if isinstance(function, keras.losses.Loss):
            return lambda x, y, y_pred, training: _keras_compat.unscale_loss_for_distribution(
                function(y, y_pred)
            )
        return lambda x, y, y_pred, training: tf.reduce_mean(function(y, y_pred))
    if not _keras_compat.has_compiled_loss(model):
        raise ValueError(
            f"Model '{model.name}' has no loss: compile it first or pass `loss=` (for example "
            "`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`)."
        )
    return lambda x, y, y_pred, training: _keras_compat.unscale_loss_for_distribution(
        model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)
    )


@contextlib.contextmanager
def state_restored(model):
    """Puts every non-trainable model variable (not the masks) back on exit."""
    variables = [v for v in model_variables(model) if not v.trainable]
    values = [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, values):
            variable.assign(value)


def _is_distributed(strategy) -> bool:
    return strategy is not None and strategy.num_replicas_in_sync > 1


class BatchGradients:
    """`dL/dv` for given variables on a batch, as NumPy arrays.

    Under a `MirroredStrategy` (the model's `distribute_strategy`), the
    batch is split between the replicas and the per-replica gradients are
    averaged (an all-reduce), so every caller sees the same gradient.

    Args:
        model: The Keras model.
        variables: The variables to differentiate with respect to.
        loss: A Keras loss (name, function or object). Defaults to the
            compiled loss (`model.compute_loss`).
        training: bool. Forward pass in training mode (batch statistics,
            dropout). Non-trainable state is restored afterwards. Defaults
            to `True`.
        output_transform: Optional callable applied to the model's output
            before the loss, e.g. `lambda logits: logits / 200.0` (GraSP's
            temperature). Defaults to `None`.
    """

    def __init__(self, model, variables, loss=None, training: bool = True, output_transform=None):
        self.model = model
        self.variables = list(variables)
        self.loss = loss
        self.training = training
        self.output_transform = output_transform
        self._loss = loss_fn(model, loss)
        self._strategy = getattr(model, "distribute_strategy", None)
        self._gradient = tf.function(self._all_replicas(self._replica_gradient), reduce_retracing=True)
        self._hvp = tf.function(self._all_replicas(self._replica_hvp), reduce_retracing=True)

    def _distributed_run(self) -> bool:
        return _is_distributed(self._strategy)

    def _all_replicas(self, step):
        if not self._distributed_run():
            return step

        def run(*args):
            per_replica = self._strategy.run(step, args=args)
            return [self._strategy.reduce(tf.distribute.ReduceOp.MEAN, g, axis=None) for g in per_replica]

        return run

    def _value(self, x, y):
        y_pred = self.model(x, training=self.training)
        if self.output_transform is not None:
            y_pred = self.output_transform(y_pred)
        return self._loss(x, y, y_pred, self.training)

    def _dense(self, grads):
        return [
            tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, self.variables)
        ]

    def _replica_gradient(self, x, y):
        with tf.GradientTape() as tape:
            value = self._value(x, y)
        return self._dense(tape.gradient(value, self.variables))

    def _replica_hvp(self, x, y, vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = self._value(x, y)
            grads = self._dense(inner.gradient(value, self.variables))
            product = tf.add_n([tf.reduce_sum(g * tf.stop_gradient(v)) for g, v in zip(grads, vectors)])
        return self._dense(outer.gradient(product, self.variables))

    def _split(self, x, y):
        x, y = np.asarray(x), np.asarray(y)
        if self._distributed_run():
            replicas = self._strategy.num_replicas_in_sync
            if len(x) < replicas:
                raise ValueError(
                    f"The gradient batch has {len(x)} examples, fewer than the {replicas} replicas."
                )
            parts = np.array_split(np.arange(len(x)), replicas)

            def shard(array):
                return self._strategy.experimental_distribute_values_from_function(
                    lambda context: array[parts[context.replica_id_in_sync_group]]
                )

            return shard(x), shard(y)
        return x, y

    def __call__(self, x, y) -> list[np.ndarray]:
        """The gradients on batch `(x, y)`, one array per variable."""
        x, y = self._split(x, y)
        with state_restored(self.model), dense_gradients():
            grads = self._gradient(x, y)
        return [np.asarray(g) for g in grads]

    def hessian_vector_product(self, x, y, vectors) -> list[np.ndarray]:
        """`H v` on batch `(x, y)`: the Hessian of the loss times `vectors` (one per variable)."""
        x, y = self._split(x, y)
        vectors = [tf.constant(np.asarray(v), dtype=var.dtype) for v, var in zip(vectors, self.variables)]
        with state_restored(self.model), dense_gradients():
            products = self._hvp(x, y, vectors)
        return [np.asarray(p) for p in products]
