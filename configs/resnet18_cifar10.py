"""Frankle & Carbin's "Resnet-18" on CIFAR-10: global pruning, warmup, rewinding.

Reproduces Frankle & Carbin, ICLR 2019 (arXiv:1803.03635), Section 4,
Figure 8 (Resnet-18 with global pruning at learning rate 0.1 with warmup)
and, with `--config.pruning.rewind_to=<k>it`, the rewinding experiments of
Frankle et al., "Stabilizing the Lottery Ticket Hypothesis" (2019,
arXiv:1903.01611).

The paper's "Resnet-18" is the 16-32-64 CIFAR ResNet with three stages of
three basic blocks (Table 1), the network He et al. call ResNet-20: it is
the registry's `resnet20`. (For the 11M-parameter ImageNet-style ResNet-18,
use `--config.model.name=resnet18`.)

Setup (paper, Table 1 and Section 4): SGD, momentum 0.9, learning rate 0.1
with 20,000 iterations of linear warmup, x0.1 at iterations 20,000 and
25,000, 30,000 iterations, batch 128, weight decay 1e-4 (coupled); standard
augmentation (flip, 4-pixel pad-and-crop); 5,000 training images held out
for validation. Pruning: 20% of the convolution weights per round,
globally; the output layer is not pruned ("fc 0%").

Expected result (paper, Figure 8): with warmup, winning tickets keep the
dense test accuracy (about 90%) down to roughly a tenth of the weights
remaining; without warmup at learning rate 0.1 (`--config.train.warmup=0it`)
they do not; random reinitialisation degrades early. Read the exact levels
off the paper's figure.

Expected runtime: not measured here (no GPU and no CIFAR-10 on this
machine). Needs CIFAR-10 prepared for tensorflow_datasets.

Command:

    python -m tf_lottery.main --config=configs/resnet18_cifar10.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
    python -m tf_lottery.main --config=configs/resnet18_cifar10.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets --config.pruning.rewind_to=500it
"""

from tf_lottery.experiments.schema import defaults


def get_config(arg=None):
    """F&C's CIFAR "Resnet-18" with warmup; `arg="smoke"` shrinks it."""
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "cifar10"
    config.dataset.validation = 5000
    config.dataset.augment = True
    config.model.name = "resnet20"
    config.train.optimizer = "sgd"
    config.train.lr = 0.1
    config.train.momentum = 0.9
    config.train.weight_decay = 1e-4
    config.train.batch_size = 128
    config.train.training_steps = "30000it"
    config.train.schedule = "step"
    config.train.milestones = "20000it,25000it"
    config.train.warmup = "20000it"
    config.train.eval_every = "1000it"
    config.pruning.scope = "global"
    config.pruning.rate = 0.2
    config.pruning.exclude = "output"
    config.pruning.rewind_to = "0it"
    config.run.levels = 15
    config.run.replicates = 3
    config.run.branches = "reinit,random_global"
    config.run.checkpoint_every = "2000it"
    if arg == "smoke":
        config.dataset.train_limit = 2048
        config.train.training_steps = "64it"
        config.train.milestones = "40it,50it"
        config.train.warmup = "16it"
        config.train.eval_every = "32it"
        config.run.levels = 2
        config.run.replicates = 1
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config
