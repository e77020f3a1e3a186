"""`TrainBatchGradients`: the dense gradient of a training step's own batch, captured in the step.

RigL grows the inactive connections with the largest dense-gradient
magnitude on the batch of the update step (Evci et al. 2020, section 3).
Keras callbacks never see that batch, but the compiled train step already
computes its dense gradient: a masked weight's read carries a custom-gradient
identity (`tf_lottery._keras_compat`) whose gradient function receives the
upstream gradient *before* the pruned positions are zeroed. This class hangs
a capture on that identity: on the one step whose optimizer counter matches
an armed step, the gradient is added to a buffer of the weight's shape; on
every other step a `tf.cond` skips the write.

Why there and not in an optimizer wrapper: the optimizer only ever sees the
masked gradient (zero at pruned positions, the sparse network's gradient),
so a wrapper would need the masking moved into it, changing what every
optimizer, gradient clipping and loss scaling see. The read hook leaves the
train step as it is, works eagerly, in `tf.function`, with `jit_compile=True`
and `steps_per_execution > 1` (the armed step is compared with the
optimizer's own counter inside the compiled loop), and costs one scalar
comparison per masked read on other steps: no host transfer, no extra pass.

Under `tf.distribute` each replica adds its own gradient to its copy of an
on-read buffer whose reads sum the copies: the sum of the per-replica
gradients of the replica-scaled loss, which is what the optimizer receives
(Keras sums the replicas' gradients of `loss / num_replicas`). With a
`LossScaleOptimizer` the captured gradient carries the loss scale (a
constant factor, so the ranking within a tensor is unchanged).

The captured gradient is the one of the weights *before* the update step's
own optimizer step (the same gradient the optimizer applies in it); rigl's TF1
optimizer skips the weight update on mask-update steps, this does not.

Limits: a weight read inside a `tf.while_loop` of the train step (a
recurrent cell's kernel) is refused when the step is traced (TensorFlow
cannot write a variable from a while loop's gradient that the loop did not
receive), and the hooks are removed; any other gradient of the weights
computed while the optimizer counter is one short of the armed step (e.g. by
another callback between the two steps) is added to the buffer too.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_lottery import _keras_compat


class _Capture:
    """What a masked weight's read hook needs: where to add, when, and whom to tell on refusal."""

    def __init__(self, buffer, armed, refuse):
        self.buffer = buffer
        self.armed = armed
        self.refuse = refuse


class TrainBatchGradients:
    """Captures the dense gradient of given masked weights at chosen optimizer steps.

    Args:
        model: The Keras model (its `distribute_strategy` owns the buffers).
        weights: The masked weights (`PruneWrapper.pruned_weights`).
        counter: The optimizer's `iterations` variable. The step numbered
            `s` (the one after which `iterations == s`) is captured when
            `arm(s)` was called.

    Example:

    ```python
    capture = TrainBatchGradients(model, weights, model.optimizer.iterations)
    capture.arm(100)
    model.fit(x, y, ...)  # retraced: `model.make_train_function(force=True)`
    gradients = capture.take()  # the dense gradients of step 100's batch
    ```

    Reference:
        Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML
        2020, arXiv:1911.11134.
    """

    def __init__(self, model, weights, counter):
        self.model = model
        self.weights = list(weights)
        self.counter = counter
        self._strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        with self._strategy.scope():
            self._target = tf.Variable(
                np.int64(-1),
                trainable=False,
                name="rigl_capture_step",
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self._buffers = [
                tf.Variable(
                    np.zeros(tuple(w.shape), "float32"),
                    trainable=False,
                    name="rigl_dense_gradient",
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.SUM,
                )
                for w in self.weights
            ]
        for weight, buffer in zip(self.weights, self._buffers):
            _keras_compat.capture_gradients(weight, _Capture(buffer, self._armed, self._refuse))
        self.released = False

    def _armed(self):
        step = tf.cast(tf.convert_to_tensor(self.counter), tf.int64) + 1
        return tf.equal(step, tf.convert_to_tensor(self._target))

    def _refuse(self) -> None:
        # The failed trace may have created variables in the train function: the next fit() makes a new one.
        self.release()
        self.model.train_function = None

    def arm(self, step: int) -> None:
        """Captures the gradient of optimizer step `step` (`-1`: none)."""
        self._target.assign(np.int64(step))

    def take(self) -> list[np.ndarray]:
        """The captured gradients (summed over replicas), as arrays; the buffers are zeroed."""
        values = [np.asarray(tf.convert_to_tensor(b.read_value())) for b in self._buffers]
        for buffer in self._buffers:
            for local in self._strategy.experimental_local_results(buffer):
                local.assign(tf.zeros_like(local))
        return values

    def release(self) -> None:
        """Removes the hooks (functions traced later no longer capture)."""
        for weight in self.weights:
            _keras_compat.capture_gradients(weight, None)
        self.released = True
