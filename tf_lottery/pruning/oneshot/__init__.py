"""One-shot pruning of trained models with a little calibration data: magnitude, Wanda, SparseGPT.

`tfl.oneshot.magnitude(model, sparsity)`, `tfl.oneshot.wanda(model, data,
sparsity)` and `tfl.oneshot.sparsegpt(model, data, sparsity)` write their
result into the masks (and, for SparseGPT, the kernels) of the model's
`PruneWrapper`s, so fine-tuning, reports, tickets, `strip` and export work
on the result unchanged. See docs/ONESHOT.md.
"""

from tf_lottery.pruning.oneshot.engine import OneShotReport
from tf_lottery.pruning.oneshot.magnitude import magnitude
from tf_lottery.pruning.oneshot.sparsegpt import sparsegpt
from tf_lottery.pruning.oneshot.wanda import wanda

__all__ = ["OneShotReport", "magnitude", "sparsegpt", "wanda"]
