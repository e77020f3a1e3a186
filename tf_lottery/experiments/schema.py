"""The experiment config: every option, its default, and its checks.

A config file (`configs/<name>.py`) starts from `defaults()` and changes what
its experiment needs; every value can then be overridden on the command line
(`--config.train.lr=0.01`). The defaults here are also what the run hash
leaves out (see `config_hash.py`), so a default must never change meaning:
add a new option with a default that reproduces the old behaviour.

Durations and points in training are strings `"<N>it"` (optimizer steps) or
`"<N>ep"` (epochs), as in open_lth (`"160ep"`, `"500it"`).

Groups:

- `experiment`: `"lottery"` (iterative magnitude pruning, IMP) or
  `"oneshot"` (level k is pruned in one step from the dense network to the
  sparsity of IMP level k). Names the run directory, not hashed.
- `seed`: base seed; replicate `r` uses seed `seed + r`.
- `dataset`, `model`, `train`, `pruning`: what is trained and how (hashed).
  `model` also takes the model builder's own keyword arguments.
- `pretrain`: optionally, train the dense network on another task first
  and start every level from its weights (open_lth's `--pretrain`; see
  `pretrain.py`). Hashed.
- `run`: how the run is carried out (levels, replicates, controls,
  checkpointing, output); none of it changes a result, so none is hashed.

The open_lth options (`foundations/hparams.py` there) keep open_lth's names:
`dataset.subsample_fraction`, `dataset.random_labels_fraction`,
`dataset.transformation_seed`, `train.data_order_seed`, `model.model_init`,
`model.batchnorm_init`, `model.output_frozen`, `model.batchnorm_frozen`,
`train.eval_on_train`, `pretrain.*`; open_lth's random-pruning branch is the
controls `random_<layerwise|global|even>[_from_<init|end>]`
(`kinds/controls.py`). Where they differ from open_lth, and how pruning
counts differ, is in docs/OPEN_LTH.md.
"""

from __future__ import annotations

import difflib

import ml_collections

RETRAIN_MODES = ("rewind", "lr_rewind", "finetune", "reinit")
RANDOM_STRATEGIES = ("layerwise", "global", "even")
RANDOM_STARTS = ("rewind", "init", "end")
# `random_<strategy>` starts at the rewind point; `random_<strategy>_from_<start>` elsewhere.
BRANCHES = (
    "reinit",
    "random_layerwise",
    "random_global",
    "lr_rewind",
    "finetune",
    "random_even",
    *(f"random_{s}_from_{start}" for s in RANDOM_STRATEGIES for start in RANDOM_STARTS[1:]),
)
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
WEIGHT_DECAY_MODES = ("coupled", "decoupled")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# open_lth's names (models/initializers.py, models/bn_initializers.py); '' = the builder's own.
MODEL_INITS = ("", "kaiming_normal", "kaiming_uniform", "glorot_normal", "glorot_uniform", "orthogonal")
BATCHNORM_INITS = ("", "uniform", "fixed", "oneone", "positivenegative")
# Options of `config.model` handled around the builder, not passed to it.
MODEL_OPTIONS = ("model_init", "batchnorm_init", "output_frozen", "batchnorm_frozen")

# Groups whose values never change a result: left out of the hash.
UNHASHED = ("experiment", "run", "dataset.data_dir")


def defaults() -> ml_collections.ConfigDict:
    """Every option with its default value."""
    config = ml_collections.ConfigDict()
    config.experiment = "lottery"
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "mnist1d"
    # Directory of prepared tensorflow_datasets data ('' = the tfds default).
    config.dataset.data_dir = ""
    # Training examples held out (from the end of train) for validation.
    config.dataset.validation = 0
    # Standard CIFAR augmentation: random flip and 4-pixel pad-and-crop.
    config.dataset.augment = False
    # Use only the first N training examples (0 = all); for smoke runs.
    config.dataset.train_limit = 0
    # MNIST-1D generator: total samples (80/20 train/test) and seed.
    config.dataset.num_samples = 5000
    config.dataset.generator_seed = 42
    # open_lth's dataset transformations, applied to the training split only
    # (after `train_limit`), random labels first: keep a random
    # ceil(fraction * n) of the training examples (1.0 = all) ...
    config.dataset.subsample_fraction = 1.0
    # ... and give ceil(fraction * n) of them a label drawn uniformly from
    # all classes (it may equal the old one; 0.0 = none) ...
    config.dataset.random_labels_fraction = 0.0
    # ... both drawn from this seed, the same for every replicate and level.
    config.dataset.transformation_seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "mnist1d_mlp"
    # Every Dense/Conv kernel (output layer included) drawn from one of
    # MODEL_INITS ('' = the builder's own `kernel_initializer`); the reinit
    # control draws from it too. Not together with `kernel_initializer`.
    config.model.model_init = ""
    # BatchNormalization gamma/beta from BATCHNORM_INITS ('' = ones/zeros,
    # which is open_lth's 'fixed').
    config.model.batchnorm_init = ""
    # Kernel and bias of the layer named `output` stay at their initial
    # (masked) values: not trained.
    config.model.output_frozen = False
    # BatchNormalization gamma and beta stay at their initial values (the
    # layers still normalise with batch statistics while training).
    config.model.batchnorm_frozen = False

    config.train = ml_collections.ConfigDict()
    config.train.optimizer = "adam"
    config.train.lr = 1e-3
    config.train.momentum = 0.0
    config.train.nesterov = False
    config.train.weight_decay = 0.0
    # 'coupled' adds weight_decay * w to the gradient (PyTorch, open_lth);
    # 'decoupled' is Keras' own (AdamW-style) decay.
    config.train.weight_decay_mode = "coupled"
    config.train.batch_size = 128
    config.train.training_steps = "1ep"
    config.train.schedule = "constant"
    # For schedule='step': comma-separated points, e.g. "80ep,120ep".
    config.train.milestones = ""
    config.train.gamma = 0.1
    # Linear warmup from 0 to `lr`, e.g. "10000it".
    config.train.warmup = "0it"
    # Evaluate (validation and test) every this often: the early-stopping
    # iteration is measured at this resolution.
    config.train.eval_every = "1ep"
    config.train.eval_test = True
    # Also evaluate the whole training set (no augmentation) at every
    # evaluation: `train_eval_loss`, `train_eval_accuracy`.
    config.train.eval_on_train = False
    # Seed of the training data order (and augmentation draws), the same for
    # every replicate; -1 = `seed + replicate` (open_lth: unset).
    config.train.data_order_seed = -1

    config.pruning = ml_collections.ConfigDict()
    # Fraction of the surviving weights removed at each level.
    config.pruning.rate = 0.2
    # 'global' (one threshold over all layers) or 'layer' (each layer by the rate).
    config.pruning.scope = "global"
    # Per-layer rates, "name=rate,glob*=rate" (e.g. "output=0.1").
    config.pruning.layer_rates = ""
    # Layers never pruned (comma-separated names or globs), e.g. "output".
    config.pruning.exclude = ""
    config.pruning.rewind_to = "0it"
    # How each level restarts: 'rewind' (weights and schedule to `rewind_to`),
    # 'lr_rewind' (trained weights, schedule rewound), 'finetune' (trained
    # weights, final learning rate), 'reinit' (fresh random weights).
    config.pruning.retrain = "rewind"
    # '' (single weights) or 'RxC' whole blocks, e.g. '1x4' (TFLite's sparse
    # kernel; see `tf_lottery.pruning.blocks`).
    config.pruning.structure = ""
    # What ranks the weights each level prunes (`tf_lottery.pruning.scoring`):
    # 'magnitude' (|w|, the lottery ticket's rule) or 'random' (uniform scores
    # drawn per replicate and level: random pruning on IMP's schedule); with
    # `structure='channels'` also 'l1' (= 'magnitude'), 'l2' or 'bn_gamma'
    # (see `tf_lottery.pruning.units_pruning`). The data-driven scorers
    # (SNIP, GraSP, SynFlow, Taylor) are available from the Python API.
    config.pruning.scorer = "magnitude"

    config.pretrain = ml_collections.ConfigDict()
    # Train the dense network this long on the pretraining task first; every
    # level then starts from its weights (open_lth's `--pretrain`; see
    # `pretrain.py`). '0it' = no pretraining.
    config.pretrain.training_steps = "0it"
    # The pretraining dataset ('' = `dataset.name`; the rest of `dataset`
    # and all of `train` apply to it) ...
    config.pretrain.dataset_name = ""
    # ... and its classes ('' = all; e.g. '0-5', relabelled 0..5). With
    # another number of classes the output layer is not transferred.
    config.pretrain.classes = ""

    config.run = ml_collections.ConfigDict()
    # Levels 0 (dense) .. `levels` are trained.
    config.run.levels = 10
    config.run.replicates = 1
    # Which replicates this process runs: comma-separated indices and ranges
    # ("0,2", "3-5"; '' = all). Processes (or machines) sharing one workdir
    # each run their part; the results cover every finished level.
    config.run.only_replicates = ""
    # Comma-separated controls run as branches on every level, from
    # schema.BRANCHES.
    config.run.branches = "reinit"
    config.run.checkpoint_every = "1ep"
    config.run.steps_per_execution = 1
    # Compile the train step with XLA (see `xla.py`; one-device strategy only, see
    # `strategy.jit_compile`); a model XLA cannot compile falls back to plain graphs with one
    # warning naming the op.
    config.run.jit_compile = True
    # The `tf.distribute` strategy, from STRATEGIES (see `strategy.py`):
    # "default" (one device), "mirrored" (all local GPUs or CPUs),
    # "multi_worker" (workers from TF_CONFIG), "tpu". Batch sizes are global.
    config.run.strategy = "default"
    # Makes TensorFlow ops deterministic (process-wide), so a resumed run is
    # bit-identical to an uninterrupted one.
    config.run.deterministic = True
    config.run.plots = True
    # Write TensorBoard event files of every level (train/val/test loss and accuracy,
    # sparsity) under <run directory>/tensorboard/replicate_<r>/[<branch>/]level_<k>/.
    config.run.tensorboard = False
    # 0: quiet; 1: one line per level; 2: also every evaluation.
    config.run.verbose = 1
    return config


def csv_list(value: str) -> list[str]:
    """`"a, b,c"` -> `["a", "b", "c"]` ('' -> [])."""
    return [item.strip() for item in str(value).split(",") if item.strip()]


def parse_replicates(value: str, replicates: int, argument: str = "run.only_replicates") -> list[int] | None:
    """`"0,2-3"` -> `[0, 2, 3]` (each below `replicates`); '' -> None (all)."""
    chosen = []
    for item in csv_list(value):
        low, sep, high = item.partition("-")
        try:
            first, last = int(low), int(high if sep else low)
        except ValueError:
            first, last = -1, -1
        if not 0 <= first <= last < replicates:
            raise ValueError(
                f"Invalid value for `config.{argument}`: expected comma-separated replicate indices "
                f"or ranges in [0, {replicates}) (config.run.replicates={replicates}), e.g. '0,2' or "
                f"'1-3'. Received: only_replicates={value!r}."
            )
        chosen.extend(range(first, last + 1))
    return sorted(set(chosen)) if chosen else None


def parse_rates(value: str, argument: str = "pruning.layer_rates") -> dict[str, float]:
    """`"output=0.1,conv*=0.15"` -> `{"output": 0.1, "conv*": 0.15}`."""
    rates = {}
    for item in csv_list(value):
        name, sep, rate = item.partition("=")
        try:
            number = float(rate)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None or not 0.0 <= number < 1.0:
            raise ValueError(
                f"Invalid value for `{argument}`: expected 'layer=rate' pairs separated by "
                f"commas with rates in [0, 1), e.g. 'output=0.1,conv*=0.15'. Received: {value!r}."
            )
        rates[name.strip()] = number
    return rates


def did_you_mean(key: str, known) -> str:
    """`" Did you mean `config.<group>.<closest>`?"` for a misspelt `key` (`group.name`), else ''."""
    group, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    return f" Did you mean `config.{group + '.' if group else ''}{close[0]}`?" if close else ""


def fail(key: str, expected: str, value) -> None:
    """Raises the standard error for a config option: its key, what is expected, the value."""
    raise ValueError(f"Invalid value for `config.{key}`: expected {expected}. Received: {key}={value!r}.")


def _choice(config, key: str, choices) -> None:
    value = _get(config, key)
    if value not in choices:
        raise ValueError(
            f"Invalid value for `config.{key}`: expected one of {tuple(choices)}. Received: {key}={value!r}."
        )


def _check_structure(config) -> None:
    """`pruning.structure`: '', 'RxC' blocks or 'channels', with no control that draws single weights at random."""
    from tf_lottery.pruning.structure import BlockStructure, UnitStructure, parse

    value = config.pruning.get("structure", "")
    try:
        parsed = parse(value or None)
    except ValueError:
        parsed = value
    if parsed is not None and not (isinstance(parsed, BlockStructure) or parsed == UnitStructure("channels")):
        fail(
            "pruning.structure",
            "'' (single weights), 'RxC' whole blocks (e.g. '1x4') or 'channels' (whole units and filters)",
            value,
        )
    randoms = [b for b in csv_list(config.run.branches) if b.startswith("random_")]
    if parsed is not None and randoms:
        fail(
            "run.branches",
            f"no random_* control with pruning.structure={value!r} (they draw single weights, not "
            f"{parsed}); drop {randoms}",
            config.run.branches,
        )


SCORERS = ("magnitude", "random")
UNIT_SCORERS = ("l1", "l2", "bn_gamma")
_DATA_SCORERS = {
    "snip": "tfl.SNIPScorer",
    "grasp": "tfl.GraSPScorer",
    "synflow": "tfl.SynFlowScorer",
    "taylor": "tfl.scoring.TaylorScorer",
}


def _check_scorer(config) -> None:
    """`pruning.scorer`: a weight scorer by name; unit scorers only under `structure='channels'`."""
    value = config.pruning.get("scorer", "magnitude")
    units = config.pruning.get("structure", "") == "channels"
    accepted = SCORERS + (UNIT_SCORERS if units else ())
    if value in accepted:
        return
    if value in UNIT_SCORERS:
        fail(
            "pruning.scorer",
            f"one of {accepted}; {value!r} scores whole units: set pruning.structure='channels'",
            value,
        )
    if isinstance(value, str) and value.lower() in _DATA_SCORERS:
        fail(
            "pruning.scorer",
            f"one of {accepted}; {value!r} scores with batches of data and is available from the Python API "
            f"(`tfl.prune(model, rate, scorer={_DATA_SCORERS[value.lower()]}(...))`), not from a config",
            value,
        )
    fail("pruning.scorer", f"one of {accepted}", value)


def _get(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _number(config, key: str, low: float, high: float | None = None, integer: bool = False) -> None:
    value = _get(config, key)
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and value >= low
    ok = ok and (high is None or value < high)
    if not ok:
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        what = "an int" if integer else "a number"
        raise ValueError(
            f"Invalid value for `config.{key}`: expected {what} {bound}. Received: {key}={value!r}."
        )


def _point(config, key: str) -> None:
    from tf_lottery.lottery.rewind import RewindPoint

    value = _get(config, key)
    try:
        RewindPoint.parse(value)
    except ValueError:
        raise ValueError(
            f"Invalid value for `config.{key}`: expected '<N>it' (optimizer steps) or '<N>ep' "
            f"(epochs), e.g. '500it' or '2ep'. Received: {key}={value!r}."
        ) from None


def _check_model(model: ml_collections.ConfigDict) -> None:
    from tf_lottery.models import registry

    accepted = registry.builder_defaults(registry.canonical_name(model.get("name")))
    for key, value in model.items():
        if key != "name" and key not in MODEL_OPTIONS and key not in accepted:
            raise ValueError(
                f"Unknown config key `config.model.{key}` for model '{registry.canonical_name(model.name)}': "
                f"expected one of {sorted(accepted)}. Received: {key}={value!r}."
                f"{did_you_mean(f'model.{key}', [*accepted, *MODEL_OPTIONS])}"
            )


def _boolean(config, key: str) -> None:
    value = _get(config, key)
    if not isinstance(value, bool):
        fail(key, "True or False", value)


def _fraction(config, key: str, zero: bool) -> None:
    value = _get(config, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0.0 <= value <= 1.0) or (value == 0.0 and not zero):
        fail(key, f"a number in {'[0' if zero else '(0'}, 1]", value)


def _check_pretrain(config) -> None:
    from tf_lottery.data.classes import parse_classes
    from tf_lottery.data.registry import NAMES as DATASETS
    from tf_lottery.data.registry import SHAPES

    group = config.pretrain
    _point(config, "pretrain.training_steps")
    name = str(group.dataset_name or config.dataset.name).lower()
    if group.dataset_name:
        _choice(config, "pretrain.dataset_name", DATASETS)
        main = str(config.dataset.name).lower()
        if SHAPES[name][0] != SHAPES[main][0]:
            fail(
                "pretrain.dataset_name",
                f"a dataset with examples of shape {SHAPES[main][0]} like `config.dataset.name`={main!r} "
                f"(its weights are reused), not {SHAPES[name][0]}",
                group.dataset_name,
            )
    if group.classes:
        classes = parse_classes(group.classes, "pretrain.classes")
        if max(classes) >= SHAPES[name][1]:
            fail("pretrain.classes", f"classes of '{name}', 0..{SHAPES[name][1] - 1}", group.classes)


def _check_open_lth_options(config) -> None:
    """The options named after open_lth's (see the module docstring)."""
    model = config.model
    _choice(config, "model.model_init", MODEL_INITS)
    _choice(config, "model.batchnorm_init", BATCHNORM_INITS)
    _boolean(config, "model.output_frozen")
    _boolean(config, "model.batchnorm_frozen")
    if model.model_init and "kernel_initializer" in model:
        fail(
            "model.model_init",
            "'' when `config.model.kernel_initializer` is set (both choose the kernels' "
            f"initializer; set one of them, kernel_initializer={model.kernel_initializer!r})",
            model.model_init,
        )
    _fraction(config, "dataset.subsample_fraction", zero=False)
    _fraction(config, "dataset.random_labels_fraction", zero=True)
    _number(config, "dataset.transformation_seed", 0, integer=True)
    transformed = config.dataset.subsample_fraction != 1.0 or config.dataset.random_labels_fraction != 0.0
    if transformed and str(config.dataset.name).lower() == "imagenet2012":
        fail(
            "dataset.name",
            "a dataset held in memory when `subsample_fraction` or `random_labels_fraction` is set "
            "(ImageNet is streamed from its files)",
            config.dataset.name,
        )
    _number(config, "train.data_order_seed", -1, integer=True)
    _check_pretrain(config)
    _boolean(config, "train.eval_on_train")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every known option; raises ValueError naming the bad one."""
    reference = defaults()
    for group, node in config.items():
        if group not in reference:
            raise ValueError(
                f"Unknown config key `config.{group}`.{did_you_mean(group, reference.keys())} "
                f"Known keys: {sorted(reference.keys())}."
            )
        if isinstance(reference[group], ml_collections.ConfigDict):
            if not isinstance(node, ml_collections.ConfigDict):
                raise ValueError(f"Invalid value for `config.{group}`: expected a group of options.")
            if group == "model":
                continue  # model builder arguments are checked by the builder
            unknown = sorted(set(node.keys()) - set(reference[group].keys()))
            if unknown:
                raise ValueError(
                    f"Unknown config key `config.{group}.{unknown[0]}`."
                    f"{did_you_mean(f'{group}.{unknown[0]}', reference[group].keys())} Known keys of "
                    f"`config.{group}`: {sorted(reference[group].keys())}."
                )
    from tf_lottery.experiments import registry

    registry.get(config.get("experiment"))  # an unknown kind's error lists every kind
    _check_model(config.model)
    from tf_lottery.data.registry import NAMES as DATASETS

    _choice(config, "dataset.name", DATASETS)
    _check_open_lth_options(config)
    _number(config, "seed", 0, integer=True)
    _number(config, "dataset.validation", 0, integer=True)
    _number(config, "dataset.train_limit", 0, integer=True)
    _choice(config, "train.optimizer", OPTIMIZERS)
    _number(config, "train.lr", 0.0)
    _number(config, "train.momentum", 0.0, 1.0)
    _number(config, "train.weight_decay", 0.0)
    _choice(config, "train.weight_decay_mode", WEIGHT_DECAY_MODES)
    _number(config, "train.batch_size", 1, integer=True)
    _choice(config, "train.schedule", SCHEDULES)
    _number(config, "train.gamma", 0.0)
    for key in ("train.training_steps", "train.warmup", "train.eval_every", "pruning.rewind_to"):
        _point(config, key)
    for milestone in csv_list(config.train.milestones):
        from tf_lottery.lottery.rewind import RewindPoint

        try:
            RewindPoint.parse(milestone)
        except ValueError:
            raise ValueError(
                "Invalid value for `config.train.milestones`: expected comma-separated '<N>it' "
                f"or '<N>ep' points, e.g. '80ep,120ep'. Received: milestones={config.train.milestones!r}."
            ) from None
    _number(config, "pruning.rate", 0.0, 1.0)
    _choice(config, "pruning.scope", ("global", "layer"))
    parse_rates(config.pruning.layer_rates)
    _choice(config, "pruning.retrain", RETRAIN_MODES)
    _check_structure(config)
    _check_scorer(config)
    _number(config, "run.levels", 0, integer=True)
    _number(config, "run.replicates", 1, integer=True)
    _number(config, "run.steps_per_execution", 1, integer=True)
    if not isinstance(config.run.get("tensorboard", False), bool):
        fail("run.tensorboard", "True or False", config.run.tensorboard)
    if not isinstance(config.run.get("jit_compile", True), bool):
        fail("run.jit_compile", "True or False", config.run.jit_compile)
    _choice(config, "run.strategy", STRATEGIES)
    parse_replicates(config.run.only_replicates, int(config.run.replicates))
    for branch in csv_list(config.run.branches):
        if branch not in BRANCHES:
            raise ValueError(
                f"Invalid value for `config.run.branches`: unknown control {branch!r}; expected "
                f"comma-separated names from {BRANCHES}. Received: branches={config.run.branches!r}."
            )
    _point(config, "run.checkpoint_every")
