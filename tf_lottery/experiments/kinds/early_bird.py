"""The `early_bird` kind: find the ticket's mask early, rewind, retrain (You et al. 2020).

Each replicate trains the dense network (`round_0`) and, every
`early_bird.every` (default each epoch), draws the mask that magnitude
pruning to `early_bird.target_sparsity` would give (the library callback
`tfl.EarlyBird`, run by the trainer's hook in the one level loop:
`pruning.scope`, `early_bird.granularity`); it stops as soon as
the normalised Hamming distances between successive masks stayed below
`early_bird.epsilon` for `early_bird.window` checks (or at the end of
training, with `found: false`). The ticket is that mask with the weights and
optimizer at `pruning.rewind_to`; `round_1` retrains it to the end of
training. Both rounds resume after a kill like any level; the search state
(last mask, recent distances) is stored at every check.

The cost to compare with IMP: `total_steps` in round 1's metrics is the
search steps plus the retraining steps; IMP to level k costs `k + 1` full
trainings.

    python -m tf_lottery.main --config=configs/early_bird_mnist1d.py --workdir=runs

Reference:
    You et al., "Drawing Early-Bird Tickets", ICLR 2020, arXiv:1909.11957.
"""

from __future__ import annotations

import copy
import os

import ml_collections
import numpy as np

from tf_lottery.core.walk import set_masks
from tf_lottery.experiments import registry
from tf_lottery.experiments.callback_hook import CallbackHook
from tf_lottery.experiments.level_loop import Line, Training
from tf_lottery.experiments.optimizers import to_steps
from tf_lottery.experiments.runner import run_levels
from tf_lottery.experiments.schema import fail as _fail
from tf_lottery.lottery.early_bird import GRANULARITIES, EarlyBird, draw_masks
from tf_lottery.lottery.rewind import Snapshot, reset_for_retrain
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.utils import atomic_io

__all__ = ["defaults", "run_experiment", "validate"]

SEARCH_STATE = "search_state.npz"
TICKET = "early_bird.npz"


def defaults() -> ml_collections.ConfigDict:
    """`schema.defaults()` plus the `early_bird` group (the paper's epsilon and window)."""
    from tf_lottery.experiments import schema

    config = schema.defaults()
    config.experiment = "early_bird"
    config.run.levels = 1
    config.run.branches = ""
    config.early_bird = ml_collections.ConfigDict()
    config.early_bird.target_sparsity = 0.9
    config.early_bird.epsilon = 0.1
    config.early_bird.window = 5
    # How often a mask is drawn: '<N>ep' or '<N>it'.
    config.early_bird.every = "1ep"
    config.early_bird.granularity = "unstructured"
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the `early_bird` options, then every shared option with `schema.validate`."""
    from tf_lottery.experiments import schema

    if config.get("experiment") != "early_bird":
        _fail("experiment", "'early_bird'", config.get("experiment"))
    if "early_bird" not in config:
        raise ValueError(
            "Missing config group `config.early_bird`: start the config from "
            "`tf_lottery.experiments.kinds.early_bird.defaults()`."
        )
    group = config.early_bird
    target, epsilon, window = group.target_sparsity, group.epsilon, group.window
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 <= target < 1.0:
        _fail("early_bird.target_sparsity", "a float in [0, 1)", target)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        _fail("early_bird.epsilon", "a float > 0 (the largest mask distance counted as no change)", epsilon)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        _fail("early_bird.window", "an int >= 1", window)
    if group.granularity not in GRANULARITIES:
        _fail("early_bird.granularity", f"one of {GRANULARITIES}", group.granularity)
    if int(config.run.levels) != 1:
        _fail("run.levels", "1 (round 0 searches, round 1 retrains the ticket)", config.run.levels)
    if schema.csv_list(config.run.branches):
        _fail("run.branches", "'' (no controls for Early-Bird tickets)", config.run.branches)
    if config.pruning.retrain != "rewind":
        _fail("pruning.retrain", "'rewind'", config.pruning.retrain)
    if config.pruning.get("scorer", "magnitude") != "magnitude":
        _fail(
            "pruning.scorer",
            "'magnitude' (Early-Bird draws its masks by `early_bird.granularity`)",
            config.pruning.scorer,
        )
    shared = copy.deepcopy(config)
    with shared.unlocked():
        del shared["early_bird"]
        shared.experiment = "lottery"
        shared.train.eval_every = group.every  # checks it is a point
    schema.validate(shared)


def describe(config: ml_collections.ConfigDict) -> str:
    group = config.early_bird
    return (
        f"Early-Bird tickets of {config.model.name} on {config.dataset.name}: {config.pruning.scope} "
        f"{group.granularity} masks at {group.target_sparsity:.0%}, a check every {group.every}, "
        f"epsilon {group.epsilon}, window {group.window}; rewind to {config.pruning.rewind_to}"
    )


class _SearchHook(CallbackHook):
    """`tfl.EarlyBird` in the trainer, its search stored at every check so a restart continues it.

    `search_state.npz` holds the last mask drawn and, in its entry `info`,
    the distances so far and the step of the last check.
    """

    progress_files = (SEARCH_STATE,)

    def __init__(self, callback: EarlyBird, checks, steps_per_epoch: int, rewind_step: int, rewind_state):
        super().__init__(callback, checks, steps_per_epoch=steps_per_epoch)
        self.rewind_step, self.rewind_state = rewind_step, rewind_state
        self.stored = None

    def load(self, level_dir: str) -> None:
        self.path = os.path.join(level_dir, SEARCH_STATE)
        self.stored = None
        if atomic_io.exists(self.path):
            archive = atomic_io.load_npz(self.path)
            info = atomic_io.json_entry(archive, "info", self.path)
            distances, last = info.get("distances"), info.get("last")
            if not isinstance(distances, list) or not isinstance(last, int):
                raise atomic_io.DamagedFileError(
                    self.path, "its entry 'info' has no valid 'distances' and 'last'"
                )
            masks = [archive[k] for k in sorted(k for k in archive if k.startswith("mask"))]
            self.stored = {"last_check": last, "distances": [tuple(d) for d in distances], "previous": masks}

    def begin(self, model, plan, position, resumed):
        super().begin(model, plan, position, resumed)
        if self.callback.found_step is not None:
            self.end_step = self.callback.found_step

    def state(self, position):
        if self.stored is None:
            return None
        snapshot = self.rewind_state() if position >= self.rewind_step else None
        return {**self.stored, "step": position, "snapshot": snapshot}

    def at(self, position: int) -> None:
        checked = self.callback.get_state()["last_check"]
        super().at(position)
        self._store(checked)

    def end(self, position: int) -> None:
        checked = self.callback.get_state()["last_check"]
        super().end(position)
        self._store(checked)

    def _store(self, checked: int) -> None:
        state = self.callback.get_state()
        if state["last_check"] == checked or state["previous"] is None:
            return
        arrays = {f"mask{i:05d}": m for i, m in enumerate(state["previous"])}
        arrays["info"] = atomic_io.json_array(
            {"distances": [list(d) for d in state["distances"]], "last": state["last_check"]}
        )
        atomic_io.write_npz(self.path, arrays)


def _rewind_state(context) -> Snapshot:
    if context.rewind_step == 0:
        return context.initial
    return context.rewind_snapshot()


class _EarlyBird(Training):
    """Round 0 searches with `tfl.EarlyBird` through the trainer's hook; round 1 retrains the ticket.

    Args:
        config: ConfigDict. The run's config; the plug-in keeps the
            `early_bird` group and the `pruning` scope and rewind point.
    """

    check_start = False
    metadata_branch = False

    def __init__(self, config: ml_collections.ConfigDict):
        self.group = config.early_bird
        self.scope, self.rewind_to = config.pruning.scope, config.pruning.rewind_to

    def done(self, context, level, branch=None):
        if level == 0 and not atomic_io.exists(_ticket_path(context)):
            return False
        return super().done(context, level, branch)

    def start(self, context, level):
        if level == 0:
            return False  # IMP's level 0: dense, at initialisation
        path = _ticket_path(context)
        try:
            ticket = Ticket.load(path)
        except atomic_io.DamagedFileError as error:
            raise error.with_fix(
                f"Delete '{path}' and run the same command again: it is drawn anew from the stored "
                "search (round_0)."
            ) from error
        self.ticket = ticket
        set_masks(context.model, ticket.masks)
        reset_for_retrain(context.model, "rewind", _rewind_state(context))
        return True

    def capture_steps(self, context, level):
        # The rewind point's state (initialisation is the context's own).
        return (context.rewind_step,) if level == 0 and context.rewind_step > 0 else ()

    def hooks(self, context, level, plan):
        if level != 0:
            return []
        group = self.group
        every = max(1, to_steps(group.every, context.steps_per_epoch))
        checks = list(range(every, context.total_steps + 1, every))
        self.callback = EarlyBird(
            float(group.target_sparsity),
            epsilon=float(group.epsilon),
            window=int(group.window),
            every=every,
            granularity=group.granularity,
            scope=self.scope,
            rewind_to=self.rewind_to,
        )
        rewind = context.rewind_step
        return [
            _SearchHook(
                self.callback, checks, context.steps_per_epoch, rewind, lambda: _rewind_state(context)
            )
        ]

    def finish(self, context, level, result, plan):
        if level == 0:
            return self._finish_search(context, plan)
        search_steps = int(self.ticket.metadata["early_bird_step"])
        return {
            "search_steps": search_steps,
            "found": bool(self.ticket.metadata["found"]),
            "total_steps": search_steps + plan.end - plan.start,
        }

    def _finish_search(self, context, plan) -> dict:
        """Writes the ticket file: the converged mask (or the one at the end) and the rewind point."""
        callback, group, model = self.callback, self.group, context.model
        found = callback.found_step is not None
        step = callback.found_step if found else plan.end
        state = callback.get_state()
        masks = (
            state["previous"]
            if state["last_check"] == step and state["previous"] is not None
            else draw_masks(model, float(group.target_sparsity), group.granularity, self.scope)
        )
        ticket = Ticket.from_model(
            model,
            weights=_rewind_state(context).model_values,
            metadata={"early_bird_step": step, "found": found, "distances": state["distances"]},
        )
        ticket.masks = [np.array(m, dtype=bool) for m in masks]
        ticket.metadata["sparsity"] = ticket.sparsity
        ticket.save(_ticket_path(context))
        return {"search_steps": step, "found": found, "distances": state["distances"]}


def _ticket_path(context) -> str:
    return os.path.join(context.store.replicate_dir(context.replicate), TICKET)


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) an `early_bird` config: round 0 the search, round 1 the retrained ticket."""
    validate(config)
    return run_levels(
        config,
        workdir,
        log,
        main=Line("early_bird"),
        title=describe(config),
        training=_EarlyBird(config),
        levels=1,
    )


registry.register(
    registry.Kind(
        name="early_bird",
        run=run_experiment,
        defaults=defaults,
        validate=validate,
        summary="Early-Bird tickets: the mask drawn when it stops changing in dense training (You et al. 2020)",
    )
)
