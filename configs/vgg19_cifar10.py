"""VGG-19 on CIFAR-10 with global pruning, warmup and rewinding.

Reproduces Frankle & Carbin, ICLR 2019 (arXiv:1803.03635), Section 4,
Figure 7 (VGG-19: global pruning, learning rate 0.1 with linear warmup) and,
with `--config.pruning.rewind_to=<k>it`, the late-resetting experiments of
Frankle et al., "Stabilizing the Lottery Ticket Hypothesis" (2019,
arXiv:1903.01611) / "Linear Mode Connectivity and the Lottery Ticket
Hypothesis" (ICML 2020, arXiv:1912.05671).

Setup: VGG-19 for CIFAR (batch normalization, global average pooling, one
fully-connected layer); SGD, momentum 0.9, learning rate 0.1 with 10,000
iterations of linear warmup, x0.1 at epochs 80 and 120, 160 epochs, batch
64, weight decay 1e-4 (coupled, as in PyTorch/open_lth); standard
augmentation (flip, 4-pixel pad-and-crop); 5,000 training images held out
for validation. Pruning: 20% of the convolution weights per round,
globally; the output layer is not pruned (the paper's "fc 0%", open_lth's
`pruning_layers_to_ignore`). Our counts differ slightly from open_lth's
`sparse_global`, which also counts the ignored layer: after 10 rounds 4,575
weights (0.21% of those remaining) differ (docs/OPEN_LTH.md). open_lth's
VGG also draws `model_init=kaiming_normal`, `batchnorm_init=uniform`: add
`--config.model.model_init=kaiming_normal --config.model.batchnorm_init=uniform`
for its initialisation.

Expected result (paper, Figure 7): with warmup, winning tickets keep the
dense test accuracy (about 92-93%) down to a few percent of the weights
remaining, and random reinitialisation falls clearly below them; without
warmup at learning rate 0.1 (`--config.train.warmup=0it`) IMP does not find
winning tickets. Read the exact levels off the paper's figure.

Expected runtime: not measured here (no GPU and no CIFAR-10 on this
machine): 160 epochs of VGG-19 per round, 21 rounds plus the controls.
Needs CIFAR-10 prepared for tensorflow_datasets.

Command:

    python -m tf_lottery.main --config=configs/vgg19_cifar10.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
    python -m tf_lottery.main --config=configs/vgg19_cifar10.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets --config.pruning.rewind_to=1ep
"""

from tf_lottery.experiments.schema import defaults


def get_config(arg=None):
    """VGG-19 IMP with warmup; `arg="smoke"` shrinks it to a minute (on a GPU)."""
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "cifar10"
    config.dataset.validation = 5000
    config.dataset.augment = True
    config.model.name = "vgg19"
    config.train.optimizer = "sgd"
    config.train.lr = 0.1
    config.train.momentum = 0.9
    config.train.weight_decay = 1e-4
    config.train.batch_size = 64
    config.train.training_steps = "160ep"
    config.train.schedule = "step"
    config.train.milestones = "80ep,120ep"
    config.train.gamma = 0.1
    config.train.warmup = "10000it"
    config.train.eval_every = "1ep"
    config.pruning.scope = "global"
    config.pruning.rate = 0.2
    config.pruning.exclude = "output"
    config.pruning.rewind_to = "0it"
    config.run.levels = 20
    config.run.replicates = 3
    config.run.branches = "reinit,random_global"
    if arg == "smoke":
        config.dataset.train_limit = 2048
        config.model.width = 0.25
        config.train.training_steps = "2ep"
        config.train.milestones = "1ep"
        config.train.warmup = "10it"
        config.run.levels = 2
        config.run.replicates = 1
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config
