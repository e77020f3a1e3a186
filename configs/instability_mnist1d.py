"""Instability analysis (linear mode connectivity) of the MNIST-1D MLP.

Reproduces the kind of Figure 2/3 in Frankle et al. 2020 ("Linear Mode
Connectivity and the Lottery Ticket Hypothesis", arXiv:1912.05671): for
rewind points k, two copies trained from k with different data orders, the
error along the straight line between them, the error barrier, the L2
distance; for the dense network, the IMP subnetwork and a randomly pruned one.

Expected (measured, docs/RESULTS.md): the dense and the IMP networks are
stable already at k = 0 (test barriers below 1%), as the paper found for
LeNet; the randomly pruned subnetwork is the least stable. About 5 minutes
on 2 CPU cores; `:smoke` about 20 seconds. The lines (IMP rewinding to each
k) run through the level loop; the table and the plot are written to
`results/instability.json` and `results/instability.png` of the run directory.

    python -m tf_lottery.main --config=configs/instability_mnist1d.py --workdir=/tmp/runs
"""

from tf_lottery.experiments.kinds.instability import get_config  # noqa: F401
