"""`GraSPScorer`: gradient signal preservation, `-w * Hg` on a batch, at initialization.

GraSP prunes the weights whose removal reduces the gradient norm the least
(or increases it). With `g` the gradient of the loss and `H` its Hessian,
removing weight `w` changes `g^T g` by about `-2 w (H g)`; the paper's score
is `S = -w * (H g)` and the weights with the *largest* S are pruned. In
tf_lottery a higher score is kept, so this scorer returns `-S = w * (H g)`.
`H g` is a Hessian-vector product (double backpropagation). The logits are
divided by a temperature (200 in the paper) for both passes, so the model
must output logits.

Example:

```python
tfl.prune(model, target_sparsity=0.9, scorer=GraSPScorer(model, x[:256], y[:256]))
```

Reference:
    Wang, Zhang & Grosse, "Picking Winning Tickets Before Training by
    Preserving Gradient Flow", ICLR 2020, arXiv:2002.07376.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery.pruning.scorers.batch_gradients import BatchGradients
from tf_lottery.utils import validation


class GraSPScorer:
    """`w * (H g)` on one batch (the negated GraSP score): higher is kept.

    Args:
        model: The model being pruned; it must output logits.
        x: Input batch.
        y: Target batch.
        loss: A Keras loss on logits. Defaults to the compiled loss.
        temperature: float. The logits are divided by it. Defaults to `200.0`.
        training: bool. Forward passes in training mode; BatchNorm
            statistics are restored afterwards. Defaults to `True`.
    """

    def __init__(self, model, x, y, loss=None, temperature: float = 200.0, training: bool = True):
        self.model = model
        self.x = x
        self.y = y
        self.loss = loss
        self.temperature = validation.check_positive_number("temperature", temperature)
        self.training = validation.check_bool("training", training)

    def __call__(self, wrappers) -> list[np.ndarray]:
        weights = [w for wr in wrappers for w in wr.pruned_weights]
        temperature = self.temperature
        gradients = BatchGradients(
            self.model,
            weights,
            loss=self.loss,
            training=self.training,
            output_transform=lambda logits: logits / temperature,
        )
        g = gradients(self.x, self.y)
        hg = gradients.hessian_vector_product(self.x, self.y, g)
        return [keras.ops.convert_to_numpy(w.value) * p for w, p in zip(weights, hg)]
