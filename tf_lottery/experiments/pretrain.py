"""`config.pretrain`: the dense network trained on another task first; IMP starts from it.

open_lth's `--pretrain` trains the dense network on a pretraining dataset
with its own training hyperparameters, then starts the lottery run from the
pretrained weights (a new output layer when the number of classes differs).
Here, per replicate, the network built from the replicate's seed trains for
`pretrain.training_steps` on the pretraining task (`pretrain.dataset_name`,
by default the run's dataset, restricted to `pretrain.classes` if given,
with the rest of `config.dataset` and all of `config.train`), through the
trainer, stored and resumable in `replicate_<r>/pretrain/`. Its final
weights replace the replicate's initial weights, except, when the tasks'
numbers of classes differ, the output layer, which keeps its fresh
initialisation. Level 0 then trains from those weights with a fresh
optimizer from data step 0 on the run's own task, and every level rewinds
as usual (to `pruning.rewind_to` of that training): the pretrained network
is the replicate's initialisation for everything that follows (the
`random_*_from_init` controls included; `reinit` still draws fresh
weights).

Where open_lth differs: its main training starts at the data step where
pretraining ended (pretraining is how it implements rewinding), so level 0
trains `training_steps - pretrain_training_steps`; here level 0 trains the
full `train.training_steps`, and rewinding stays `pruning.rewind_to`.

Example:

```python
config = get_config()  # configs/default.py: IMP on all ten MNIST-1D digits
config.pretrain.training_steps = "10ep"
config.pretrain.classes = "0-5"  # pretrain on digits 0-5 first
```

Reference:
    Frankle et al., open_lth (github.com/facebookresearch/open_lth),
    `lottery/desc.py` and `lottery/runner.py`; Morcos et al., "One ticket to
    win them all", NeurIPS 2019, arXiv:1906.02773.
"""

from __future__ import annotations

import copy
import os

import keras
import numpy as np

from tf_lottery.core.walk import model_variables
from tf_lottery.experiments import run_store, trainer
from tf_lottery.experiments.network import Network
from tf_lottery.experiments.optimizers import to_steps
from tf_lottery.experiments.run_services import RunServices
from tf_lottery.utils import atomic_io


def enabled(config) -> bool:
    """Whether `config` pretrains (`pretrain.training_steps` is not zero)."""
    group = config.get("pretrain")
    return group is not None and to_steps(group.training_steps, 1) > 0


def load_task(config):
    """The pretraining task's data pipeline."""
    from tf_lottery.data.classes import class_subset, parse_classes
    from tf_lottery.data.registry import load_dataset

    dataset = copy.deepcopy(config.dataset)
    if config.pretrain.dataset_name:
        dataset.name = config.pretrain.dataset_name
    data = load_dataset(dataset)
    if config.pretrain.classes:
        data = class_subset(data, parse_classes(config.pretrain.classes, "pretrain.classes"))
    return data


def directory(store, replicate: int) -> str:
    return os.path.join(store.replicate_dir(replicate), "pretrain")


class PretrainedNetwork:
    """The network plug-in of a run that pretrains: the run's network, started from pretrained weights.

    Chosen by `network_for(config)` when `config.pretrain` asks for it.

    Args:
        config: ConfigDict. A validated experiment config; `pretrain`,
            `dataset` (the pretraining task), `train` (batch size, evaluation),
            `run` (`checkpoint_every`, `verbose`) and `experiment` are read.
        network: `network.Network` that builds the run's network (and the
            pretraining one). Defaults to `Network(config)`.
    """

    def __init__(self, config, network: Network | None = None):
        self.config = config
        self.network = network or Network(config)

    def check(self, data) -> None:
        """What `Network.check` refuses."""
        self.network.check(data)

    def build(self, services: RunServices) -> keras.Model:
        """The replicate's network with the pretrained weights (the output layer's where they fit).

        Trains the pretraining task (or reads it back from
        `replicate_<r>/pretrain/`) with a network built from the replicate's
        seed and compiled as the run's is, then loads its weights. The
        optimizer state stays the fresh one (step 0).
        """
        model = self.network.build(services)
        task = load_task(self.config)
        if tuple(task.input_shape) != tuple(services.data.input_shape):
            raise ValueError(
                f"Invalid value for `config.pretrain.dataset_name`: its examples have shape {task.input_shape}, "
                f"the run's dataset {services.data.input_shape}; the pretrained weights cannot be reused. "
                f"Received: dataset_name={self.config.pretrain.dataset_name!r}."
            )
        values = self._pretrained(
            lambda: self.network.compiled(task, services.seed, services.strategy, like=model),
            task,
            directory(services.store, services.replicate),
            services.replicate,
            services.data_seed,
            services.log,
        )
        kept = load_into(model, values)
        if any("output" not in path for path in kept):
            raise ValueError(
                f"The pretrained network differs from the run's beyond its output layer: {kept}."
            )
        return model

    def _pretrained(self, build, data, folder: str, replicate: int, data_seed: int, log) -> list:
        """Trains (or reads back) the pretrained network in `folder`; returns its weights.

        Returns:
            The pretrained model's variable values (`model_variables` order).
        """
        config = self.config
        checkpoint = os.path.join(folder, trainer.CHECKPOINT)
        if not run_store.is_done(folder, outputs=(trainer.CHECKPOINT,)):
            model = build()
            steps_per_epoch = data.steps_per_epoch(int(config.train.batch_size))
            end = to_steps(config.pretrain.training_steps, steps_per_epoch)
            plan = trainer.LevelPlan(
                start=0,
                end=end,
                steps_per_epoch=steps_per_epoch,
                batch_size=int(config.train.batch_size),
                seed=data_seed,
                eval_every=max(1, to_steps(config.train.eval_every, steps_per_epoch)),
                checkpoint_every=max(1, to_steps(config.run.checkpoint_every, steps_per_epoch)),
                eval_test=bool(config.train.eval_test),
            )
            atomic_io.makedirs(folder)
            result = trainer.train_level(model, data, plan, folder)
            metrics = {
                "experiment": config.experiment,
                "branch": "pretrain",
                "replicate": replicate,
                "num_classes": int(data.num_classes),
                "end_step": end,
                "evals": result["evals"],
                "elapsed_s": result["elapsed_s"],
                **trainer.summarize(result["evals"]),
            }
            run_store.write_metrics(folder, metrics)
            if config.run.verbose:
                accuracy = metrics["final"].get("test_accuracy", float("nan"))
                log(f"[replicate {replicate} pretrain] test acc {accuracy:.4f} at step {end}")
        try:
            snapshot, _ = run_store.load_state(checkpoint)
        except atomic_io.DamagedFileError as error:
            raise error.with_fix(run_store.recompute_fix(folder, checkpoint)) from error
        return snapshot.model_values


def network_for(config) -> Network | PretrainedNetwork:
    """The network plug-in of `config`: pretrained when `config.pretrain` asks for it."""
    return PretrainedNetwork(config) if enabled(config) else Network(config)


def load_into(model, values: list) -> list[str]:
    """Sets `model`'s variables to the pretrained `values` where the shapes agree.

    Returns:
        The paths of the variables left as they were (the output layer's,
        when the numbers of classes differ).
    """
    variables = model_variables(model)
    if len(variables) != len(values):
        raise ValueError(
            f"The pretrained network has {len(values)} variables, the run's {len(variables)}: "
            "`config.pretrain` needs the same model."
        )
    kept = []
    for variable, value in zip(variables, values):
        if tuple(variable.shape) == np.shape(value):
            variable.assign(value)
        else:
            kept.append(variable.path)
    return kept
