"""IMP on MNIST-1D with the MLP, 3 seeds, the ticket against three controls.

Reproduces, at MNIST-1D scale, Frankle & Carbin (2019, arXiv:1803.03635),
Figures 3 and 4 (LeNet-300-100 on MNIST): winning tickets (iterative
magnitude pruning, rewound to initialisation) against random
reinitialisation of the same masks and against random pruning (the ticket's
per-layer sparsity with shuffled masks, and a global random mask of the same
size), with error bars over 3 replicates. The MNIST-1D paper (Greydanus
2020, arXiv:2011.14439, lottery-ticket experiment) reported about 67% test
accuracy for the ticket against about 58% for random pruning at about 92%
sparsity.

Setup: as `configs/default.py` (the MNIST-1D MLP 40-256-256-10, Adam 1e-3,
batch 100, 30 epochs per level, 20% of hidden / 10% of output weights pruned
per round, layer-wise, 12 rounds down to about 8% of the weights), with
seeds 0, 1, 2.

Expected result (measured, see docs/RESULTS.md): dense test accuracy
60.2 ± 1.7%; the ticket stays within 1 point of it or above it down to 7.6%
of the weights remaining (61.3 ± 1.6% at 9.3%); at 11.5% remaining the
controls are at 52.3% (reinit), 50.1% (layer-wise random pruning) and 45.8%
(global random pruning) against 62.3% for the ticket.

Expected runtime: 9 minutes of CPU time on 2 cores (measured: 20 minutes
wall on a machine loaded by other jobs); `:smoke` under a minute.

Command:

    python -m tf_lottery.main --config=configs/mnist1d_mlp.py --workdir=runs
    python -m tf_lottery.main --config=configs/mnist1d_mlp.py:smoke --workdir=/tmp/smoke
"""

from tf_lottery.experiments.default_config import get_config as _default


def get_config(arg=None):
    """3 replicates, controls reinit + random pruning; `arg="smoke"` shrinks it."""
    config = _default("smoke" if arg == "smoke" else None)
    if arg not in (None, "", "smoke"):
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    config.run.replicates = 2 if arg == "smoke" else 3
    config.run.branches = "reinit,random_layerwise,random_global"
    return config
