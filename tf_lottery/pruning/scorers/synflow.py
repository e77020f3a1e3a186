"""SynFlow: data-free, iterative pruning at initialization by synaptic flow.

The score of a weight is `|dR/dw * w|` with `R = 1^T f(1; |w|)`: the sum of
the outputs of the network whose every parameter is replaced by its absolute
value, on an all-ones input. No data and no labels are used. Pruning is
iterative: `iterations` rounds (100 in the paper) on an exponential
schedule, round `k` reaching sparsity `1 - (1 - s)^(k / n)`, with the scores
recomputed on the masked network each round; this is what avoids layer
collapse.

As in the reference implementation, *every* floating-point model variable
is replaced by its absolute value while scoring (biases, BatchNorm
parameters and moving statistics included) and BatchNorm runs in inference
mode; the original values are restored afterwards. The product of
`|w|` over depth can overflow float32 for very deep networks (the reference
code uses float64); the scorer then raises an error.

Example:

```python
model = tfl.prunable(make_model())
synflow_prune(model, target_sparsity=0.9)   # 100 rounds, global
```

Reference:
    Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any
    data by iteratively conserving synaptic flow", NeurIPS 2020,
    arXiv:2006.05467.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.core.masked_variable import dense_gradients
from tf_lottery.core.walk import model_variables, pruning_target
from tf_lottery.pruning import pruner as pruning
from tf_lottery.utils import validation


class SynFlowScorer:
    """|dR/dw * w| on the all-ones input of the |w| network: higher is kept.

    Args:
        model: The model being pruned.
        input_shape: Shape of one example, without the batch dimension.
            Defaults to the model's own input shape (functional and
            Sequential models).
    """

    def __init__(self, model, input_shape=None):
        self.model = model
        if input_shape is None:
            shape = getattr(pruning_target(model), "input_shape", None)
            if not isinstance(shape, tuple) or any(d is None for d in shape[1:]):
                raise ValueError(
                    f"Invalid value for argument `input_shape`: model '{model.name}' has no single "
                    f"fixed input shape ({shape!r}); pass `input_shape=` (one example, no batch "
                    "dimension)."
                )
            input_shape = shape[1:]
        self.input_shape = tuple(int(d) for d in input_shape)
        self._function = None

    def _flow_gradients(self, weights):
        if self._function is None:
            target = pruning_target(self.model)

            @tf.function
            def flow(inputs):
                with tf.GradientTape() as tape:
                    value = tf.reduce_sum(target(inputs, training=False))
                return value, tape.gradient(value, weights)

            self._function = flow
        with dense_gradients():
            return self._function(tf.ones((1, *self.input_shape), dtype="float32"))

    def __call__(self, wrappers) -> list[np.ndarray]:
        weights = [w for wr in wrappers for w in wr.pruned_weights]
        variables = [v for v in model_variables(self.model) if "float" in str(v.dtype)]
        originals = [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]
        try:
            for variable, value in zip(variables, originals):
                variable.assign(np.abs(value))
            flow, grads = self._flow_gradients(weights)
            scores = [
                np.abs(
                    np.zeros(tuple(w.shape), np.float32) if g is None else np.asarray(g) * np.asarray(w.value)
                )
                for w, g in zip(weights, grads)
            ]
        finally:
            for variable, value in zip(variables, originals):
                variable.assign(value)
        if not np.isfinite(float(flow)) or not all(np.isfinite(s).all() for s in scores):
            raise FloatingPointError(
                "SynFlow: the synaptic flow overflowed float32 (the network is too deep for a product "
                "of |w| in single precision). Scale the initialization down or prune a shallower model."
            )
        return scores


def synflow_prune(
    model,
    target_sparsity: float,
    iterations: int = 100,
    *,
    scope: str = "global",
    input_shape=None,
) -> dict:
    """Prunes `model` to `target_sparsity` by SynFlow in `iterations` rounds.

    Round `k` of `n` prunes to sparsity `1 - (1 - target_sparsity)^(k/n)`
    (the exponential schedule of the paper), scoring the network as masked
    by the previous round.

    Args:
        model: A model with `PruneWrapper` layers, usually dense.
        target_sparsity: float in [0, 1). Final sparsity.
        iterations: int >= 1. Pruning rounds. Defaults to `100`.
        scope: `"global"` (the paper) or `"layer"`. Defaults to `"global"`.
        input_shape: See `SynFlowScorer`.

    Returns:
        What the last `tfl.prune` call returns (`pruned` counts that round only).

    Example:

    ```python
    synflow_prune(model, 0.99, iterations=100)
    ```
    """
    validation.check_fraction("target_sparsity", target_sparsity)
    iterations = validation.check_int("iterations", iterations, minimum=1)
    scorer = SynFlowScorer(model, input_shape)
    result = {}
    for k in range(1, iterations + 1):
        sparsity = target_sparsity if k == iterations else 1.0 - (1.0 - target_sparsity) ** (k / iterations)
        result = pruning.prune(model, target_sparsity=sparsity, scope=scope, scorer=scorer)
    return result
