"""`SNIPScorer`: connection sensitivity |dL/dw * w| on a batch, at initialization.

SNIP's score is the first-order Taylor score of `TaylorScorer`
(`tf_lottery.pruning.scorers.taylor`, also `tfl.scoring.TaylorScorer`),
computed in training mode as in the paper; this name is kept for users who
know the method as SNIP. Prune once, before training, to the target sparsity.

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

from tf_lottery.pruning.scorers.taylor import TaylorScorer


class SNIPScorer(TaylorScorer):
    """|dL/dw * w| on one batch, in training mode: higher is kept.

    Args:
        model: The model being pruned (compiled, or pass `loss`).
        x: Input batch (e.g. 100-256 training examples).
        y: Target batch.
        loss: A Keras loss. Defaults to the compiled loss.
        training: bool. Forward pass in training mode; BatchNorm statistics
            are restored afterwards. Defaults to `True`.
    """

    def __init__(self, model, x, y, loss=None, training: bool = True):
        super().__init__(model, x, y, loss=loss, training=training)
