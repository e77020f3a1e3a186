"""KD tickets and KD-rewinding for ResNet-20 on CIFAR-10 (the paper's setting).

Reproduces Ma et al., "Good Students Play Big Lottery Better" (2021,
arXiv:2101.03255), ResNet-20 on CIFAR-10: IMP with global magnitude
pruning of the convolution weights, each level retrained on the soft labels
of the dense network (the teacher, trained for the full 182 epochs), rewound
to initialisation (`kd_ticket`) or to an early epoch (`kd_rewind`,
KD-rewinding; epoch 33 here), against the same with hard labels.

Setup: ResNet-20 (16-32-64); SGD, learning rate 0.1, momentum 0.9, weight
decay 1e-4 (coupled), batch 128, 182 epochs (64k iterations), learning rate
x0.1 at epochs 91 and 136; standard augmentation (flip, 4-pixel
pad-and-crop), so the teacher runs on every augmented batch (no logit
cache); KD loss weight 0.9, temperature 5; 20% of the surviving convolution
weights pruned per level, globally (the classifier `output` is not pruned);
10 levels (10.7% of the weights remaining).

Expected result (paper): KD tickets on par with or better than rewinding,
and KD-rewinding better than both at high sparsity. Not measured here: no
GPU and no CIFAR-10 on this machine. Needs CIFAR-10 prepared for
tensorflow_datasets (`--config.dataset.data_dir`). Expected runtime: each
level is one 182-epoch ResNet-20 training per arm (about an hour on one
modern GPU).

Command:

    python -m tf_lottery.main --config=configs/kd_resnet20_cifar10.py \\
        --workdir=runs --config.dataset.data_dir=$HOME/tensorflow_datasets
    python -m tf_lottery.main --config=configs/kd_resnet20_cifar10.py \\
        --workdir=runs --config.experiment=kd_rewind
"""

from tf_lottery.experiments.kinds.kd import kd_defaults


def get_config(arg=None):
    """The paper's ResNet-20 setting; `arg="smoke"` shrinks it."""
    config = kd_defaults()
    config.experiment = "kd_ticket"
    config.dataset.name = "cifar10"
    config.dataset.validation = 0
    config.dataset.augment = True
    config.model.name = "resnet20"
    config.train.optimizer = "sgd"
    config.train.lr = 0.1
    config.train.momentum = 0.9
    config.train.weight_decay = 1e-4
    config.train.weight_decay_mode = "coupled"
    config.train.batch_size = 128
    config.train.training_steps = "182ep"
    config.train.schedule = "step"
    config.train.milestones = "91ep,136ep"
    config.train.gamma = 0.1
    config.pruning.scope = "global"
    config.pruning.rate = 0.2
    config.pruning.exclude = "output"
    config.pruning.rewind_to = "33ep"
    config.kd.weight = 0.9
    config.kd.temperature = 5.0
    config.run.levels = 10
    config.run.replicates = 1
    if arg == "smoke":
        config.dataset.train_limit = 2048
        config.train.training_steps = "2ep"
        config.train.milestones = "1ep"
        config.pruning.rewind_to = "1ep"
        config.run.levels = 1
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config
