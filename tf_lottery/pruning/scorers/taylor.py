"""`TaylorScorer`: first-order Taylor importance |w * dL/dw| on a batch.

Removing weight `w` changes the loss by about `-w * dL/dw` (a first-order
Taylor expansion), so its magnitude is how much the weight matters; the
weights with the smallest are pruned. This is also SNIP's connection
sensitivity: SNIP differentiates the loss with respect to a multiplicative
mask `c` on every weight, at `c = 1`, and `dL/dc = dL/dw * w`. The two differ
only in the forward pass: Molchanov et al. score a trained network in
inference mode, SNIP scores the network at initialization in training mode
(`SNIPScorer` in `tf_lottery.pruning.scorers.snip` is this class with
`training=True`). SNIP's normalisation by the sum of all scores does not
change the ranking and is left out.

The gradient is the batch mean of the loss, computed by `BatchGradients`:
all-reduced over the replicas under `tf.distribute`, and with the model's
non-trainable state (BatchNorm moving statistics) restored afterwards.

Example:

```python
model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
tfl.prune(model, rate=0.2, scorer=tfl.scoring.TaylorScorer(model, x[:256], y[:256]))
```

Reference:
    Molchanov et al., "Pruning Convolutional Neural Networks for Resource
    Efficient Inference", ICLR 2017, arXiv:1611.06440; Lee, Ajanthan & Torr,
    "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
    ICLR 2019, arXiv:1810.02340.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery.pruning.scorers.batch_gradients import BatchGradients
from tf_lottery.utils import validation


class TaylorScorer:
    """|w * dL/dw| on one batch: higher is kept.

    Args:
        model: The model being pruned (compiled, or pass `loss`).
        x: Input batch (e.g. 100-256 training examples).
        y: Target batch.
        loss: A Keras loss (name, function or object): the score of the
            data loss alone. Defaults to the model's compiled objective
            (`model.compute_loss`), which also holds the model's
            regularization losses, as `fit()` minimises.
        training: bool. Forward pass in training mode (batch statistics,
            dropout); non-trainable state is restored afterwards. Defaults
            to `False`.
    """

    def __init__(self, model, x, y, loss=None, training: bool = False):
        if loss is not None:
            keras.losses.get(loss)  # an unknown loss name fails here, not at pruning time
        self.model = model
        self.x = x
        self.y = y
        self.loss = loss
        self.training = validation.check_bool("training", training)

    def __call__(self, wrappers) -> list[np.ndarray]:
        weights = [w for wr in wrappers for w in wr.pruned_weights]
        grads = BatchGradients(self.model, weights, loss=self.loss, training=self.training)(self.x, self.y)
        return [np.abs(keras.ops.convert_to_numpy(w.value) * g) for w, g in zip(weights, grads)]
