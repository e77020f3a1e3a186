"""Ticket transfer on MNIST-1D: digits 0-5 (task A) to digits 6-9 (task B).

Reproduces the protocol of Morcos et al. 2019 ("One ticket to win them all",
arXiv:1906.02773) at MNIST-1D scale: an IMP ticket found on task A (masks
and initial weights) is trained on task B with a new output layer, against
random tickets of the same layer-wise sparsity. (No second dataset with the
same input shape exists offline, so A and B split MNIST-1D's classes.)

Expected (measured, docs/RESULTS.md): the transferred ticket beats random
tickets at high sparsity (about 80% vs 75% test accuracy at 95% sparsity);
at low sparsity all are within about 1.5 points. About 8 minutes on 2 CPU
cores; `:smoke` under a minute. IMP on each task runs through the level loop
(the target task in the run directory's `target/`); the rows are written to
`results/transfer.json` of the run directory.

    python -m tf_lottery.main --config=configs/transfer_mnist1d.py --workdir=/tmp/runs
"""

from tf_lottery.experiments.kinds.transfer import get_config  # noqa: F401
