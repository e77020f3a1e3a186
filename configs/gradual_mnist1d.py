"""Gradual magnitude pruning of the MNIST-1D MLP, against IMP at the same sparsity.

Zhu & Gupta (2017, arXiv:1710.01878) on the MNIST-1D MLP 40-256-256-10 (Adam
1e-3, batch 100, 30 epochs = 1,050 steps, 3 seeds, as `configs/default.py`):
global magnitude pruning following tfmot's polynomial schedule from 0 to
89.26% sparsity over the first 70% of training, every 50 steps. 89.26% is
where IMP lands after 10 rounds of 20% (global, rewind to initialisation),
so the rows compare at exactly the same sparsity:

- (no argument): gradual pruning, 30 epochs (the steps of one IMP round).
- `:long`: gradual pruning, 330 epochs (IMP's total: 11 trainings of 30).
- `:imp`: the IMP reference, `lottery` kind, 10 rounds of 20%, global.
- `:2of4` and `:unstructured50`: 2:4 N:M masks against unstructured masks at
  the same 50%, gradual (0 -> 50% over the first 70%).
- `:smoke`: 3 epochs, 2 seeds.

Expected (measured, docs/RESULTS.md "Beyond IMP", test accuracy at early
stopping after pruning, mean ± std over 3 seeds; wall time on 2 shared CPU
cores): gradual 61.43 ± 0.76% (40 s); `:long` 65.27 ± 0.31% (4.5 min);
`:imp` round 10 62.83 ± 0.75% (3 min); `:2of4` 60.13 ± 1.38% against
`:unstructured50` 59.53 ± 0.97% (about 40 s each); `:smoke` about 20 s.

    python -m tf_lottery.main --config=configs/gradual_mnist1d.py --workdir=runs
    python -m tf_lottery.main --config=configs/gradual_mnist1d.py:imp --workdir=runs
"""

from tf_lottery.experiments.default_config import get_config as _default
from tf_lottery.experiments.kinds.gradual import defaults as _gradual_defaults

IMP_SPARSITY = 1.0 - 0.8**10  # IMP after 10 rounds of 20%
ARGS = ("", "smoke", "long", "imp", "2of4", "unstructured50")


def get_config(arg=None):
    """`arg`: '' (gradual, 30 epochs), "long" (330 epochs), "imp" (the IMP reference), "2of4", "unstructured50" or "smoke"."""
    arg = arg or ""
    if arg not in ARGS:
        raise ValueError(f"Invalid config argument: expected one of {ARGS}. Received: {arg!r}.")
    base = _default("smoke" if arg == "smoke" else None)
    base.pruning.scope = "global"
    base.pruning.layer_rates = ""
    base.run.replicates = 2 if arg == "smoke" else 3
    base.run.branches = ""
    if arg == "imp":
        base.run.levels = 10
        return base
    config = _gradual_defaults()
    for group in ("dataset", "model", "train", "pruning"):
        config[group] = base[group]
    config.run.replicates = base.run.replicates
    config.run.steps_per_execution = base.run.steps_per_execution
    config.gradual.final_sparsity = IMP_SPARSITY
    if arg == "long":
        config.train.training_steps = "330ep"
        config.train.eval_every = "10ep"
        config.run.checkpoint_every = "10ep"
    if arg in ("2of4", "unstructured50"):
        config.gradual.final_sparsity = 0.5
        config.gradual.structure = "2:4" if arg == "2of4" else ""
    return config
