"""ResNet-20 on CIFAR-10 with the open_lth / linear-mode-connectivity settings.

Reproduces the CIFAR-10 ResNet-20 lottery experiments of Frankle et al.,
"Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020
(arXiv:1912.05671), Figure 5 / Table 2 (IMP with rewinding), in the setup
of open_lth's `cifar_resnet_20` defaults.

Setup: ResNet-20 (16-32-64, 1x1 projection shortcuts); SGD, learning rate
0.1, momentum 0.9, weight decay 1e-4 (coupled, as in PyTorch), batch 128,
160 epochs, learning rate x0.1 at epochs 80 and 120; standard augmentation
(flip, 4-pixel pad-and-crop); all 50,000 training images (open_lth holds
none out, so the early-stopping column uses the training loss). Pruning:
20% per round of all convolution and fully-connected weights, globally
(open_lth `sparse_global`); rewinding to iteration 0 by default; the paper's
stable rewinding point for ResNet-20 is early in training
(`--config.pruning.rewind_to=2000it`, as an example). Our exact counts
differ from open_lth's `sparse_global` by 6 weights after 10 rounds here
(docs/OPEN_LTH.md). open_lth's ResNets draw `model_init=kaiming_normal`,
`batchnorm_init=uniform`: add `--config.model.model_init=kaiming_normal
--config.model.batchnorm_init=uniform` for its initialisation.

Expected result (paper): dense test accuracy about 91-92%; with rewinding
to iteration 0 at this learning rate, IMP subnetworks fall below the dense
accuracy early; with rewinding to an early iteration they match it to much
higher sparsities (the paper's Table 2 lists the sparsest matching level).

Expected runtime: not measured here (no GPU and no CIFAR-10 on this
machine). Needs CIFAR-10 prepared for tensorflow_datasets.

Command:

    python -m tf_lottery.main --config=configs/resnet20_cifar10.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets --config.pruning.rewind_to=2000it
"""

from tf_lottery.experiments.schema import defaults


def get_config(arg=None):
    """open_lth's ResNet-20; `arg="smoke"` shrinks it."""
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "cifar10"
    config.dataset.validation = 0
    config.dataset.augment = True
    config.model.name = "resnet20"
    config.train.optimizer = "sgd"
    config.train.lr = 0.1
    config.train.momentum = 0.9
    config.train.weight_decay = 1e-4
    config.train.batch_size = 128
    config.train.training_steps = "160ep"
    config.train.schedule = "step"
    config.train.milestones = "80ep,120ep"
    config.train.gamma = 0.1
    config.train.eval_every = "1ep"
    config.pruning.scope = "global"
    config.pruning.rate = 0.2
    config.pruning.rewind_to = "0it"
    config.run.levels = 15
    config.run.replicates = 3
    config.run.branches = "reinit,random_global"
    if arg == "smoke":
        config.dataset.train_limit = 2048
        config.train.training_steps = "2ep"
        config.train.milestones = "1ep"
        config.run.levels = 2
        config.run.replicates = 1
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config
