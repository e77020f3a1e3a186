"""LeNet-300-100 on MNIST: Frankle & Carbin (2019), Figures 3 and 4.

Reproduces Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding
Sparse, Trainable Neural Networks", ICLR 2019 (arXiv:1803.03635), Section 2,
Figures 3 and 4: iterative magnitude pruning of LeNet-300-100 with
rewinding to initialisation, against random reinitialisation and random
(layer-wise) pruning, 5 trials.

Setup (paper, Table 1 and Appendix G): fully-connected 784-300-100-10, ReLU,
Gaussian Glorot initialisation; Adam, learning rate 1.2e-3, batch 60,
50,000 iterations; MNIST with 55,000 training and 5,000 validation images
(held out of the training set); per round 20% of each hidden layer and 10%
of the output layer pruned (layer-wise); early stopping at the minimum
validation loss, evaluated every 100 iterations; 20 rounds (1.2% of the
weights remaining).

Expected result (paper): winning tickets reach the dense network's test
accuracy (about 98%) down to 3.6% of the weights remaining and learn faster
(earlier early-stopping iteration) than the dense network down to about 21%;
randomly reinitialised tickets degrade steadily from the start.

Expected runtime: not measured (no GPU here). On the 2 CPU cores of this
project's machine a LeNet-300-100 step at batch 60 costs about 6 ms with
`steps_per_execution=20` (measured there with TensorFlow 2.21), so 50,000 iterations take about
5 minutes per round plus evaluation: several hours per replicate with its
two controls (21 + 40 rounds).
Needs MNIST prepared for tensorflow_datasets in `--config.dataset.data_dir`.

Command:

    python -m tf_lottery.main --config=configs/lenet_mnist.py --workdir=runs \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
    python -m tf_lottery.main --config=configs/lenet_mnist.py:smoke --workdir=/tmp/smoke \\
        --config.dataset.data_dir=$HOME/tensorflow_datasets
"""

from tf_lottery.experiments.schema import defaults


def get_config(arg=None):
    """Frankle & Carbin's LeNet-300-100 setup; `arg="smoke"` shrinks it to a minute."""
    config = defaults()
    config.experiment = "lottery"
    config.dataset.name = "mnist"
    config.dataset.validation = 5000
    config.model.name = "lenet_300_100"
    config.train.optimizer = "adam"
    config.train.lr = 1.2e-3
    config.train.batch_size = 60
    config.train.training_steps = "50000it"
    config.train.eval_every = "100it"
    config.pruning.scope = "layer"
    config.pruning.rate = 0.2
    config.pruning.layer_rates = "output=0.1"
    config.pruning.rewind_to = "0it"
    config.run.levels = 20
    config.run.replicates = 5
    config.run.branches = "reinit,random_layerwise"
    config.run.checkpoint_every = "5000it"
    config.run.steps_per_execution = 20
    if arg == "smoke":
        config.dataset.train_limit = 6000
        config.train.training_steps = "300it"
        config.run.levels = 2
        config.run.replicates = 1
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config
