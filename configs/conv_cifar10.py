"""Conv-2, Conv-4 and Conv-6 on CIFAR-10: Frankle & Carbin (2019), Figure 5.

Reproduces Frankle & Carbin, ICLR 2019 (arXiv:1803.03635), Section 3,
Figure 5: iterative magnitude pruning of the VGG-like Conv-2/4/6 networks on
CIFAR-10 with rewinding to initialisation, against random reinitialisation,
5 trials.

Setup (paper, Table 1): 3x3 convolutions (64, 64 | 128, 128 | 256, 256 with
2x2 max-pooling after each pair), fully-connected 256-256-10, ReLU, Gaussian
Glorot initialisation; Adam, batch 60, no augmentation; CIFAR-10 with 5,000
training images held out for validation. Per network (the config argument):

| network | learning rate | iterations | conv rate | fc rate | output rate |
| ------- | ------------- | ---------- | --------- | ------- | ----------- |
| conv2   | 2e-4          | 20,000     | 10%       | 20%     | 10%         |
| conv4   | 3e-4          | 25,000     | 10%       | 20%     | 10%         |
| conv6   | 3e-4          | 30,000     | 15%       | 20%     | 10%         |

Expected result (paper, Figure 5): winning tickets learn faster (earlier
early-stopping iteration) and reach a higher test accuracy than the dense
networks down to roughly 10-20% of the weights remaining, with larger gains
for the deeper networks; randomly reinitialised tickets fall off early.
Read the exact levels off the paper's figure.

Expected runtime: not measured here (no GPU and no CIFAR-10 on this
machine); each round is 20-30k Adam steps of a small conv net, minutes on a
GPU. Needs CIFAR-10 prepared for tensorflow_datasets.

Command:

    python -m tf_lottery.main --config=configs/conv_cifar10.py:conv4 --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
    python -m tf_lottery.main --config=configs/conv_cifar10.py:conv2,smoke --workdir=/tmp/smoke \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
"""

from tf_lottery.experiments.schema import defaults

_SETTINGS = {
    # name: (learning rate, iterations, conv rate)
    "conv2": (2e-4, 20_000, 0.1),
    "conv4": (3e-4, 25_000, 0.1),
    "conv6": (3e-4, 30_000, 0.15),
}


def get_config(arg=None):
    """`arg`: "conv2" (default), "conv4" or "conv6", optionally ",smoke"."""
    parts = [p.strip() for p in (arg or "conv2").split(",") if p.strip()]
    smoke = "smoke" in parts
    names = [p for p in parts if p != "smoke"] or ["conv2"]
    if len(names) != 1 or names[0] not in _SETTINGS:
        raise ValueError(
            f"Invalid config argument: expected one of {sorted(_SETTINGS)}, optionally followed by "
            f"',smoke'. Received: {arg!r}."
        )
    name = names[0]
    lr, iterations, conv_rate = _SETTINGS[name]
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "cifar10"
    config.dataset.validation = 5000
    config.model.name = name
    config.train.optimizer = "adam"
    config.train.lr = lr
    config.train.batch_size = 60
    config.train.training_steps = f"{iterations}it"
    config.train.eval_every = "500it"
    config.pruning.scope = "layer"
    config.pruning.rate = 0.2
    config.pruning.layer_rates = f"conv*={conv_rate},output=0.1"
    config.pruning.rewind_to = "0it"
    config.run.levels = 20
    config.run.replicates = 5
    config.run.branches = "reinit"
    config.run.checkpoint_every = "2500it"
    config.run.steps_per_execution = 20
    if smoke:
        config.dataset.train_limit = 3000
        config.train.training_steps = "200it"
        config.train.eval_every = "100it"
        config.run.levels = 2
        config.run.replicates = 1
    return config
