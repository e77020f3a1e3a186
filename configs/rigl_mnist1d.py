"""RigL, SET and static sparse training of the MNIST-1D MLP, against the IMP ticket.

Evci et al. (2020, arXiv:1911.11134), Figure 2's comparison at MNIST-1D
scale: the MLP 40-256-256-10 (Adam 1e-3, batch 100, 3,500 / 500 / 1,000
sequences as `configs/default.py`), trained 60 epochs (2,100 steps) from
random masks at 90% sparsity, 3 seeds. The argument is a comma-separated
list of tokens:

- the method: `rigl` (default), `set`, `static` (the `rigl`, `set` and
  `static` kinds), or `imp`: the `lottery` kind, global magnitude IMP
  rewinding to initialisation with 20.63% per round (`1 - 0.5 ** (1/3)`), so
  rounds 7, 10 and 13 land on 80.2%, 90.1% and 95.0% sparsity; its round 0
  is the dense baseline, every round trains the same 2,100 steps;
- the layer distribution: `erk` (default) or `uniform`;
- `smoke`: 3 epochs, 2 seeds, 2 IMP rounds (seconds).

RigL and SET rewire every 100 steps until 75% of training with drop
fraction 0.3, cosine-decayed (the paper's defaults): 15 updates. Change the
sparsity with `--config.sparse.sparsity=0.95`. Test accuracy is read at the
end of training (`rigl (end)` in the table), as the RigL paper reports it.

Expected (measured, docs/RESULTS.md "Dynamic sparse training through the
runner"; test accuracy at the end, mean ± std over 3 seeds, at 90%):
RigL-ERK 56.10 ± 1.56%, SET-ERK 56.60 ± 1.11%, static-ERK 55.77 ± 1.31%,
RigL-uniform 52.27 ± 0.29%, the IMP ticket (round 10, 90.1%) 64.63 ±
1.29%, dense (IMP round 0) 63.03 ± 0.60%. Runtime on 2 shared CPU cores:
about 1-2 min for the 3 seeds of one method and sparsity (13 s of CPU per
seed), `:imp` 13 min; the whole table
(`benchmarks/sparse_training_mnist1d.py`) 32 min; `:smoke` about 20 s.

    python -m tf_lottery.main --config=configs/rigl_mnist1d.py --workdir=runs
    python -m tf_lottery.main --config=configs/rigl_mnist1d.py:set,uniform --workdir=runs \
        --config.sparse.sparsity=0.95
    python -m tf_lottery.main --config=configs/rigl_mnist1d.py:imp --workdir=runs
"""

from tf_lottery.experiments.default_config import get_config as _default
from tf_lottery.experiments.kinds.sparse_training import config_tokens
from tf_lottery.experiments.kinds.sparse_training import defaults as _sparse_defaults

METHODS = ("rigl", "set", "static", "imp")
DISTRIBUTIONS = ("erk", "uniform")
IMP_RATE = 1.0 - 0.5 ** (1.0 / 3.0)  # halves the weights every 3 rounds: 80.2%, 90.1%, 95.0% at 7, 10, 13
ARGS = ("", "smoke") + METHODS + DISTRIBUTIONS


def get_config(arg=None):
    """`arg`: comma-separated "rigl" (default), "set", "static" or "imp"; "erk" (default) or "uniform"; "smoke"."""
    method, distribution, smoke = config_tokens(arg, METHODS, DISTRIBUTIONS)
    base = _default("smoke" if smoke else None)
    base.train.training_steps = "3ep" if smoke else "60ep"
    base.run.replicates = 2 if smoke else 3
    base.run.branches = ""
    if method == "imp":
        base.pruning.scope = "global"
        base.pruning.layer_rates = ""
        base.pruning.rate = IMP_RATE
        base.run.levels = 2 if smoke else 13
        return base
    config = _sparse_defaults(method)
    for group in ("dataset", "model", "train"):
        config[group] = base[group]
    for key in ("replicates", "checkpoint_every"):
        config.run[key] = base.run[key]
    # The mask updates (every 100 or 20 steps) must fall between Keras' multi-step calls.
    config.run.steps_per_execution = 20
    config.sparse.distribution = distribution
    if smoke and method != "static":
        config.sparse.update_every = "20it"
    return config
