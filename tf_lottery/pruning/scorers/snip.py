"""`SNIPScorer`: connection sensitivity |dL/dw * w| on a batch, at initialization.

SNIP differentiates the loss with respect to a multiplicative mask `c` on
every weight, at `c = 1`: `dL/dc = dL/dw * w`. Its magnitude is the
connection sensitivity; the weights with the smallest are pruned, in one
shot, before training. (SNIP's normalisation by the sum of all scores does
not change the ranking and is left out.) It is the first-order Taylor score
of `tfl.scoring.TaylorScorer`, computed here in training mode, as in the
paper, and with an all-reduced gradient under `tf.distribute`.

Example:

```python
model = tfl.prunable(make_model())
model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
tfl.prune(model, target_sparsity=0.9, scorer=SNIPScorer(model, x[:256], y[:256]))
```

Reference:
    Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on
    Connection Sensitivity", ICLR 2019, arXiv:1810.02340.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery.pruning.scorers.batch_gradients import BatchGradients


class SNIPScorer:
    """|dL/dw * w| on one batch: higher is kept.

    Args:
        model: The model being pruned (compiled, or pass `loss`).
        x: Input batch (e.g. 100-256 training examples).
        y: Target batch.
        loss: A Keras loss. Defaults to the compiled loss.
        training: bool. Forward pass in training mode; BatchNorm statistics
            are restored afterwards. Defaults to `True`.
    """

    def __init__(self, model, x, y, loss=None, training: bool = True):
        self.model = model
        self.x = x
        self.y = y
        self.loss = loss
        self.training = training

    def __call__(self, wrappers) -> list[np.ndarray]:
        weights = [w for wr in wrappers for w in wr.pruned_weights]
        grads = BatchGradients(self.model, weights, loss=self.loss, training=self.training)(self.x, self.y)
        return [np.abs(g * keras.ops.convert_to_numpy(w.value)) for g, w in zip(grads, weights)]
