"""The default experiment: IMP on MNIST-1D with the random-reinit control.

Reproduces, at MNIST-1D scale, Frankle & Carbin (2019), Figure 3 (LeNet on
MNIST): winning tickets found by iterative magnitude pruning with rewinding
to initialisation train to the dense network's test accuracy down to about
10-20% of the weights, while the same sparse architectures reinitialised at
random do clearly worse. The MNIST-1D lottery experiment of Greydanus
(2020, arXiv:2011.14439) reported about 67% test accuracy for the ticket
against about 58% for random pruning at about 92% sparsity.

Setup: the MNIST-1D MLP (40-256-256-10, ReLU; 3,500 train / 500 validation
/ 1,000 test sequences, the canonical MNIST-1D with 500 training sequences
held out), Adam 1e-3, batch 100, 30 epochs per level, test accuracy taken at
the early-stopping iteration (lowest validation loss, evaluated every
epoch); the hidden layers lose 20% and the output layer 10% of their
surviving weights per round (layer-wise, Frankle & Carbin's LeNet recipe),
12 rounds down to 7.6% of the weights; rewinding to initialisation.

Expected result (measured with 3 seeds, docs/RESULTS.md): dense test
accuracy about 60-61%; the ticket stays within 1 point of it or above it
down to 7.6% of the weights remaining, and 2-3 points above it at 10-20%;
the reinitialised control falls 6-12 points below the ticket from about 20%
remaining on. Expected runtime: 2 to 4 minutes on 2 CPU cores (measured: 1
min 42 s of CPU time, 4 min 7 s wall on a machine loaded by other jobs);
`:smoke` about 15 seconds.

Command (this is what runs with no flags at all):

    python -m tf_lottery.main
    python -m tf_lottery.main --config=configs/default.py --workdir=/tmp/tf_lottery
    python -m tf_lottery.main --config=configs/default.py:smoke --workdir=/tmp/tf_lottery_smoke
"""

from __future__ import annotations

from tf_lottery.experiments.schema import defaults


def get_config(arg: str | None = None):
    """The default MNIST-1D IMP config; `arg="smoke"` shrinks it to seconds."""
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "mnist1d"
    config.dataset.validation = 500
    config.model.name = "mnist1d_mlp"
    config.train.optimizer = "adam"
    config.train.lr = 1e-3
    config.train.batch_size = 100
    config.train.training_steps = "30ep"
    config.train.eval_every = "1ep"
    config.pruning.rate = 0.2
    config.pruning.scope = "layer"
    config.pruning.layer_rates = "output=0.1"
    config.pruning.rewind_to = "0it"
    config.run.levels = 12
    config.run.replicates = 1
    config.run.branches = "reinit"
    config.run.steps_per_execution = 35
    # A checkpoint every 5 epochs (1 s of training here): a resumed level
    # retrains at most that; checkpointing every epoch was 6% of the run.
    # Not part of the run's hash (schema.UNHASHED).
    config.run.checkpoint_every = "5ep"
    if arg == "smoke":
        config.train.training_steps = "3ep"
        config.run.levels = 2
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config
