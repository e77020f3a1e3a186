"""ResNet-50 on ImageNet with rewinding to epoch k.

Reproduces the ImageNet ResNet-50 experiments of Frankle et al., "Linear
Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020
(arXiv:1912.05671), Figure 5 / Table 2, and "Stabilizing the Lottery Ticket
Hypothesis" (2019, arXiv:1903.01611): IMP finds matching subnetworks of
ResNet-50 only when rewinding to an early epoch k > 0, not to
initialisation.

Setup (open_lth `imagenet_resnet_50` defaults): ResNet-50 (torchvision
layout), SGD, momentum 0.9, weight decay 1e-4 (coupled), batch 1024,
learning rate 0.4 with 5 epochs of linear warmup, x0.1 at epochs 30, 60
and 80, 90 epochs; random-resized crops to 224 and flips; 10,000 training
images held out for validation; the ImageNet validation set as the test
set. Pruning: 20% per round, globally. Rewinding to epoch k: the config
argument (default 6): `--config=configs/resnet50_imagenet.py:6`.

Expected result (paper): dense top-1 about 76.1% (open_lth's figure for
these settings); rewinding to an early epoch gives subnetworks that match it
at substantial sparsities (the paper's Table 2 lists the sparsest matching
level); rewinding to epoch 0 does not.

Expected runtime: days of accelerator time per round sequence (not
measured here). Needs ImageNet prepared for tensorflow_datasets
(`imagenet2012`, from manually downloaded archives) in
`--config.dataset.data_dir`.

Command:

    python -m tf_lottery.main --config=configs/resnet50_imagenet.py:6 --workdir=runs \\
        --config.dataset.data_dir=/data/tensorflow_datasets
"""

from tf_lottery.experiments.schema import defaults


def get_config(arg=None):
    """`arg`: the rewind epoch k (default "6"), or "smoke" for a tiny run."""
    smoke = arg == "smoke"
    if arg in (None, "", "smoke"):
        epoch = 6
    elif str(arg).isdigit():
        epoch = int(arg)
    else:
        raise ValueError(
            f"Invalid config argument: expected the rewind epoch k (an int) or 'smoke'. Received: {arg!r}."
        )
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "imagenet2012"
    config.dataset.validation = 10000
    config.model.name = "resnet50"
    config.train.optimizer = "sgd"
    config.train.lr = 0.4
    config.train.momentum = 0.9
    config.train.weight_decay = 1e-4
    config.train.batch_size = 1024
    config.train.training_steps = "90ep"
    config.train.schedule = "step"
    config.train.milestones = "30ep,60ep,80ep"
    config.train.gamma = 0.1
    config.train.warmup = "5ep"
    config.train.eval_every = "1ep"
    config.train.eval_test = False
    config.pruning.scope = "global"
    config.pruning.rate = 0.2
    config.pruning.rewind_to = f"{epoch}ep"
    config.run.levels = 10
    config.run.replicates = 1
    config.run.branches = "reinit"
    config.run.checkpoint_every = "1000it"
    if smoke:
        config.dataset.validation = 64
        config.dataset.train_limit = 256
        config.train.batch_size = 32
        config.train.training_steps = "16it"
        config.train.milestones = "8it"
        config.train.warmup = "4it"
        config.train.eval_every = "8it"
        config.pruning.rewind_to = "4it"
        config.run.levels = 1
    return config
