"""The network of a run: the config's model, wrapped for pruning, initialised and compiled.

`Network` is the plug-in a replicate is given to build its model
(`pretrain.PretrainedNetwork` when `config.pretrain` asks for it): it builds
`config.model` for a dataset (`build_network`: layers matching
`config.pruning.exclude` stay dense; `model_init`/`batchnorm_init` re-draw
the initial weights; `output_frozen`/`batchnorm_frozen` freeze parameters)
and compiles it inside a `tf.distribute` strategy's scope with the run's
optimizer (`config.train`), loss, `config.run.steps_per_execution` and XLA
(`config.run.jit_compile`, see `xla.py`). The level loop and pretraining
(`pretrain.py`) both build through it, so both train the same network.

Example:

```python
from tf_lottery.data.registry import load_dataset
from tf_lottery.experiments.default_config import get_config
from tf_lottery.experiments.network import Network
from tf_lottery.experiments.strategy import make_strategy

config = get_config("smoke")
data = load_dataset(config.dataset)
model = Network(config).compiled(data, seed=0, strategy=make_strategy("default"))
```
"""

from __future__ import annotations

import fnmatch

import keras
import ml_collections
import tensorflow as tf

from tf_lottery.core.prunable import prunable
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.experiments import xla
from tf_lottery.experiments.optimizers import build_optimizer
from tf_lottery.experiments.run_services import RunServices
from tf_lottery.experiments.schema import MODEL_OPTIONS, csv_list
from tf_lottery.experiments.strategy import jit_compile, steps_per_execution
from tf_lottery.models import build_model
from tf_lottery.models.freezing import freeze
from tf_lottery.models.initializers import initialize
from tf_lottery.pruning import blocks, units_pruning
from tf_lottery.pruning.structure import BlockStructure, UnitStructure
from tf_lottery.pruning.structure import parse as parse_structure


def _exclusion(patterns: list[str], matched: set, seen: list):
    """The `prunable` predicate for `patterns`; records the patterns that matched and the names seen."""

    def excluded(layer) -> bool:
        seen.append(layer.name)
        hits = {p for p in patterns if fnmatch.fnmatchcase(layer.name, p)}
        matched.update(hits)
        return bool(hits)

    return excluded


def build_network(config: ml_collections.ConfigDict, data, seed: int) -> keras.Model:
    """The config's model for `data`, initialised from `seed`, wrapped with `prunable`.

    Layers matching `config.pruning.exclude` stay unwrapped. Then
    `config.model.model_init`/`batchnorm_init` re-draw the initial weights
    and `output_frozen`/`batchnorm_frozen` freeze parameters
    (`tf_lottery.models.initializers`, `tf_lottery.models.freezing`). Not
    compiled.
    """
    keras.utils.set_random_seed(int(seed))
    model_options = {k: v for k, v in config.model.items() if k != "name" and k not in MODEL_OPTIONS}
    exclude = csv_list(config.pruning.exclude)
    base = build_model(config.model.name, data.input_shape, data.num_classes, **model_options)
    matched, seen = set(), []
    model = prunable(base, exclude=_exclusion(exclude, matched, seen) if exclude else None)
    unmatched = [p for p in exclude if p not in matched]
    if unmatched:
        raise ValueError(
            f"Invalid value for `config.pruning.exclude`={config.pruning.exclude!r}: "
            f"{', '.join(repr(p) for p in unmatched)} matches no prunable layer of model "
            f"'{config.model.name}'. Its prunable layers are: {sorted(set(seen))}. Use their names or "
            "glob patterns of them (e.g. 'fc*')."
        )
    option = config.model.get
    if option("model_init", "") or option("batchnorm_init", ""):
        initialize(model, option("model_init", ""), option("batchnorm_init", ""), seed=int(seed))
    if option("output_frozen", False) or option("batchnorm_frozen", False):
        freeze(model, output=option("output_frozen", False), batchnorm=option("batchnorm_frozen", False))
    return model


def check_exclude(config: ml_collections.ConfigDict, data) -> None:
    """Refuses `config.pruning.exclude` patterns that match no prunable layer, before a run writes.

    Also an 'RxC' block (`config.pruning.structure`, or the gradual kind's `gradual.structure`)
    that a pruned layer cannot take, and 'channels' on a network with no prunable units. Builds
    the network once (only when `exclude` or a structure is set) and clears the session after,
    so the run's own models get the layer names they would have had.
    """
    key, structure = "pruning.structure", config.pruning.get("structure", "")
    if not structure and "gradual" in config:
        key, structure = "gradual.structure", config.gradual.get("structure", "")
    parsed = parse_structure(structure or None)
    block = parsed if isinstance(parsed, BlockStructure) else None
    units = parsed if isinstance(parsed, UnitStructure) else None
    if not csv_list(config.pruning.exclude) and block is None and units is None:
        return
    try:
        model = build_network(config, data, int(config.seed))
        if block is not None or units is not None:
            try:
                if block is not None:
                    blocks.check_layers(prune_wrappers(model), block)
                else:
                    units_pruning.groups_for(model, units)
            except ValueError as error:
                raise ValueError(
                    f"Invalid value for `config.{key}`={structure!r}: {error} On the command "
                    "line, leave layers dense with `config.pruning.exclude`."
                ) from None
    finally:
        keras.backend.clear_session()


class Network:
    """How a run builds and compiles its network: the plug-in a replicate is given.

    Args:
        config: ConfigDict. A validated experiment config; `model`,
            `pruning.exclude` (and the structure options that
            `check` refuses early), `train` (the optimizer) and `run`
            (`strategy`, `steps_per_execution`, `jit_compile`) are read.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def check(self, data) -> None:
        """Refuses, before a run writes, exclude patterns and structures the network cannot take."""
        check_exclude(self.config, data)

    def compile(self, model: keras.Model, steps_per_epoch: int, like: keras.Model | None = None) -> None:
        """Compiles `model` with the run's optimizer and builds the optimizer; call in the strategy's scope.

        Args:
            model: keras.Model. From `build_network`.
            steps_per_epoch: int. Of the data it trains on (the learning
                rate schedule counts epochs in steps).
            like: keras.Model or None. A model compiled by this method whose
                loss, `steps_per_execution` and XLA setting `model` takes
                (pretraining's network, compiled as the replicate's).
        """
        run = self.config.run
        if like is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            execution = steps_per_execution(run.strategy, int(run.steps_per_execution))
            xla_on = jit_compile(run.strategy, run.get("jit_compile", True))
        else:
            loss, execution, xla_on = like.loss, like.steps_per_execution, bool(like.jit_compile)
        model.compile(
            optimizer=build_optimizer(self.config.train, steps_per_epoch),
            loss=loss,
            metrics=["accuracy"],
            steps_per_execution=execution,
        )
        xla.apply(model, xla_on)
        model.optimizer.build(model.trainable_variables)

    def build(self, services: RunServices) -> keras.Model:
        """The replicate's network: for its data, from its seed, compiled in its strategy's scope."""
        return self.compiled(services.data, services.seed, services.strategy)

    def compiled(
        self, data, seed: int, strategy: tf.distribute.Strategy, like: keras.Model | None = None
    ) -> keras.Model:
        """The network for `data`, initialised from `seed`, built and compiled in `strategy`'s scope.

        Its optimizer's schedule counts `data`'s steps per epoch at
        `config.train.batch_size`; see `compile` for `like`.
        """
        with strategy.scope():
            model = build_network(self.config, data, seed)
            self.compile(model, data.steps_per_epoch(int(self.config.train.batch_size)), like=like)
        return model
