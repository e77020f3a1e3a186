"""RigL / SET / static sparse training of ResNet-20 on CIFAR-10 with Evci et al.'s CIFAR settings.

Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020
(arXiv:1911.11134), section 4.2 and Figure 4 (CIFAR-10), with the training
schedule of the paper's CIFAR code (google-research/rigl,
`rigl/cifar_resnet/resnet_train_eval.py`): SGD with Nesterov momentum 0.9,
learning rate 0.1 divided by 5 at steps 30,000, 60,000 and 90,000, L2 weight
decay 5e-4 (coupled), batch 128, 250 epochs (97,500 steps), standard
augmentation (flip, 4-pixel pad-and-crop), all 50,000 training images. Masks
at 90% sparsity (ERK by default), updated every 100 steps until step 75,000
with drop fraction 0.3, cosine-decayed; grown weights start at zero. The
first convolution (`stem_conv`) stays dense, as `prune_first_layer=False` in
the paper's code (its 432 weights are outside the sparsity).

The paper's CIFAR-10 network is WideResNet-22-2; this repository has no
Wide ResNet builder, so this config uses ResNet-20 (open_lth's 16-32-64
post-activation ResNet). `--config.model.width=32` gives ResNet-20 at
WRN-22-2's widths (32-64-128), the closest network here.

The argument is a comma-separated list of tokens: the method `rigl`
(default), `set` or `static`; the distribution `erk` (default) or
`uniform`; `smoke` (2,048 images, 2 epochs, updates every 5 steps).

Expected result (paper, WRN-22-2 at 90% sparsity, Figure 4): RigL (ERK)
about 92-93% test accuracy, SET a little below, static below both, dense
about 94.5%; ResNet-20 is smaller, so expect a few points less everywhere.
Runtime: not measured here (no GPU and no CIFAR-10 on this machine); about
98k steps of ResNet-20, an hour or two on one modern GPU.

    python -m tf_lottery.main --config=configs/rigl_resnet20_cifar10.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
    python -m tf_lottery.main --config=configs/rigl_resnet20_cifar10.py:set,uniform --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets --config.sparse.sparsity=0.8
"""

from tf_lottery.experiments.kinds.sparse_training import config_tokens
from tf_lottery.experiments.kinds.sparse_training import defaults as _sparse_defaults

METHODS = ("rigl", "set", "static")
DISTRIBUTIONS = ("erk", "uniform")
ARGS = ("", "smoke") + METHODS + DISTRIBUTIONS
TOTAL_STEPS = 250 * (50_000 // 128)  # 97,500


def get_config(arg=None):
    """`arg`: comma-separated "rigl" (default), "set" or "static"; "erk" (default) or "uniform"; "smoke"."""
    method, distribution, smoke = config_tokens(arg, METHODS, DISTRIBUTIONS)
    config = _sparse_defaults(method)
    config.dataset.name = "cifar10"
    config.dataset.validation = 0
    config.dataset.augment = True
    config.model.name = "resnet20"
    config.train.optimizer = "sgd"
    config.train.lr = 0.1
    config.train.momentum = 0.9
    config.train.nesterov = True
    config.train.weight_decay = 5e-4
    config.train.batch_size = 128
    config.train.training_steps = f"{TOTAL_STEPS}it"
    config.train.schedule = "step"
    config.train.milestones = "30000it,60000it,90000it"
    config.train.gamma = 0.2
    config.train.eval_every = "5ep"
    config.pruning.exclude = "stem_conv"
    config.run.replicates = 3
    config.run.checkpoint_every = "5ep"
    config.sparse.sparsity = 0.9
    config.sparse.distribution = distribution
    if method != "static":
        config.sparse.update_every = "100it"
        config.sparse.end = 75_000 / TOTAL_STEPS
    if smoke:
        config.dataset.train_limit = 2048
        config.train.training_steps = "2ep"
        config.train.milestones = "1ep"
        config.train.eval_every = "1ep"
        config.run.checkpoint_every = "1ep"
        config.run.replicates = 1
        if method != "static":
            config.sparse.update_every = "5it"
    return config
