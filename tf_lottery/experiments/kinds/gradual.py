"""The `gradual` kind: gradual magnitude pruning during one training (Zhu & Gupta 2017).

Each replicate trains the network once, from initialisation to the end of
training (`config.train.training_steps`), pruning by magnitude to the
sparsity of a `tfl.PolynomialDecay` schedule every `gradual.frequency` steps
between `gradual.begin` and `gradual.end` (fractions of training): the
library callback `tfl.GradualPruning`, run inside the trainer's chunks by its
hook (`experiments.callback_hook`) in the one level loop, so runs resume
after a kill like any level. Scope and per-layer rates come from `config.pruning` (`layer_rates`
are the layers' final sparsities); `gradual.structure` asks for N:M, RxC block or channel masks.

The schedule's `end_step` is rounded down to `begin_step` plus a multiple of
`frequency`, so that its last pruning step reaches `final_sparsity` (tfmot
prunes only at such steps). Early stopping (`early_stop` in the results) is
read only among evaluations after pruning ended; `end` is the last.

    python -m tf_lottery.main --config=configs/gradual_mnist1d.py --workdir=runs

Reference:
    Zhu & Gupta, "To prune, or not to prune", arXiv:1710.01878.
"""

from __future__ import annotations

import copy

import ml_collections

from tf_lottery.experiments import registry
from tf_lottery.experiments.callback_hook import CallbackHook
from tf_lottery.experiments.level_loop import Line, Training
from tf_lottery.experiments.runner import run_levels
from tf_lottery.experiments.schema import fail as _fail
from tf_lottery.experiments.schema import parse_rates
from tf_lottery.pruning import structure as nm_structure
from tf_lottery.pruning.gradual import GradualPruning, prune_to_schedule
from tf_lottery.pruning.schedules import PolynomialDecay
from tf_lottery.utils import validation

__all__ = ["defaults", "run_experiment", "schedule_for", "validate"]


def defaults() -> ml_collections.ConfigDict:
    """`schema.defaults()` plus the `gradual` group: polynomial 0 -> 90% over the first 70%."""
    from tf_lottery.experiments import schema

    config = schema.defaults()
    config.experiment = "gradual"
    config.run.levels = 0
    config.run.branches = ""
    config.gradual = ml_collections.ConfigDict()
    config.gradual.initial_sparsity = 0.0
    config.gradual.final_sparsity = 0.9
    # Fractions of `train.training_steps` where pruning begins and ends.
    config.gradual.begin = 0.0
    config.gradual.end = 0.7
    config.gradual.power = 3.0
    config.gradual.frequency = 50
    # '' (unstructured), 'N:M' (e.g. '2:4'), 'RxC' blocks (e.g. '1x4', TFLite's sparse kernel)
    # or 'channels' (whole units and filters).
    config.gradual.structure = ""
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the `gradual` options, then every shared option with `schema.validate`."""
    from tf_lottery.experiments import schema

    if config.get("experiment") != "gradual":
        _fail("experiment", "'gradual'", config.get("experiment"))
    if "gradual" not in config:
        raise ValueError(
            "Missing config group `config.gradual`: start the config from "
            "`tf_lottery.experiments.kinds.gradual.defaults()`."
        )
    group = config.gradual
    for key in ("begin", "end"):
        value = group[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            _fail(f"gradual.{key}", "a fraction of training in [0, 1]", value)
    if group.end <= group.begin:
        _fail("gradual.end", f"a fraction greater than gradual.begin={group.begin}", group.end)
    if int(config.run.levels) != 0:
        _fail("run.levels", "0 (gradual pruning is one training run)", config.run.levels)
    if schema.csv_list(config.run.branches):
        _fail("run.branches", "'' (no controls for gradual pruning)", config.run.branches)
    if config.pruning.retrain != "rewind" or config.pruning.rewind_to != "0it":
        _fail("pruning.rewind_to", "'0it' (gradual pruning never rewinds)", config.pruning.rewind_to)
    if config.pruning.get("structure", ""):
        _fail(
            "pruning.structure", "'' (the gradual kind takes `gradual.structure`)", config.pruning.structure
        )
    if config.pruning.get("scorer", "magnitude") != "magnitude":
        _fail(
            "pruning.scorer",
            "'magnitude' (gradual pruning ranks weights by magnitude)",
            config.pruning.scorer,
        )
    # The schedule checks the rest (sparsities, their order, power, frequency).
    try:
        schedule_for(config, 1000000)
        nm = nm_structure.parse(group.structure or None)
    except ValueError as error:
        raise ValueError(f"Invalid `config.gradual`: {error}") from None
    if isinstance(nm, nm_structure.NMStructure) and group.final_sparsity > nm.max_sparsity:
        _fail(
            "gradual.final_sparsity", f"at most {nm.max_sparsity} for structure '{nm}'", group.final_sparsity
        )
    shared = copy.deepcopy(config)
    with shared.unlocked():
        del shared["gradual"]
        shared.experiment = "lottery"
    schema.validate(shared)


def schedule_for(config: ml_collections.ConfigDict, total_steps: int) -> PolynomialDecay:
    """The config's schedule over `total_steps` training steps, its end on a pruning step."""
    return _schedule(config.gradual, total_steps)


def _schedule(group: ml_collections.ConfigDict, total_steps: int) -> PolynomialDecay:
    begin = int(round(group.begin * total_steps))
    end = int(round(group.end * total_steps))
    frequency = validation.check_int("frequency", group.frequency, minimum=1)
    end = begin + max(1, (end - begin) // frequency) * frequency
    return PolynomialDecay(
        group.initial_sparsity,
        group.final_sparsity,
        begin_step=begin,
        end_step=end,
        power=group.power,
        frequency=frequency,
    )


def describe(config: ml_collections.ConfigDict) -> str:
    group = config.gradual
    return (
        f"gradual magnitude pruning of {config.model.name} on {config.dataset.name}: "
        f"{config.pruning.scope}, {group.initial_sparsity:.0%} -> {group.final_sparsity:.0%} between "
        f"{group.begin:.0%} and {group.end:.0%} of training, every {group.frequency} steps"
        + (f", {group.structure}" if group.structure else "")
    )


class _GradualHook(CallbackHook):
    """`tfl.GradualPruning` in the trainer; after a resume, the masks are found again from the weights.

    The checkpoint holds weights, not masks: the pruned weights are zeros,
    so pruning to the schedule's sparsity at the checkpoint finds the same
    masks (`prune_to_schedule`), and the callback continues from there.
    """

    def __init__(self, model, callback: GradualPruning, total_steps: int):
        # Masks for step s are computed after s - 1 updates, as in tfmot.
        steps = [s - 1 for s in range(1, total_steps + 1) if callback.schedule(s)[0]]
        super().__init__(callback, steps)
        self.model = model

    def restore(self, position, snapshot=None):
        if position is not None:
            # The masks are found from the checkpoint's weights (the trainer restores them
            # again, with the optimizer, after the masks are set).
            snapshot.restore_weights(self.model)
            callback = self.callback
            prune_to_schedule(
                self.model,
                callback.schedule,
                position + 1,
                scope=callback.scope,
                layer_rates=callback.layer_rates,
                structure=callback.structure,
            )

    def state(self, position):
        return self.callback.state_at(position)


class _Gradual(Training):
    """Level 0 (dense at the start, IMP's) trains with `tfl.GradualPruning` through the trainer's hook.

    Args:
        config: ConfigDict. The run's config; the plug-in keeps the
            `gradual` group and the `pruning` scope and layer rates.
    """

    check_start = False
    metadata_branch = False

    def __init__(self, config: ml_collections.ConfigDict):
        self.group = config.gradual
        self.scope = config.pruning.scope
        self.layer_rates = parse_rates(config.pruning.layer_rates)

    def capture_steps(self, context, level):
        return ()

    def hooks(self, context, level, plan):
        self.schedule = _schedule(self.group, context.total_steps)
        callback = GradualPruning(
            self.schedule,
            scope=self.scope,
            layer_rates=self.layer_rates,
            structure=self.group.structure or None,
        )
        return [_GradualHook(context.model, callback, context.total_steps)]

    def finish(self, context, level, result, plan):
        return {"early_stop_after": self.schedule.end_step, "schedule": self.schedule.get_config()}


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) a `gradual` config under `workdir`: one row per replicate (`round_0`)."""
    validate(config)
    return run_levels(
        config,
        workdir,
        log,
        main=Line("gradual"),
        title=describe(config),
        training=_Gradual(config),
        levels=0,
    )


registry.register(
    registry.Kind(
        name="gradual",
        run=run_experiment,
        defaults=defaults,
        validate=validate,
        summary="gradual magnitude pruning during one training, tfmot's polynomial schedule (Zhu & Gupta 2017)",
    )
)
