"""The one level loop: every experiment kind runs through it.

A replicate (one seed) trains level 0, the dense network, from data step 0
to the end of training and records the rewind point on the way. Level
k >= 1 of a *line* starts from a trained network, pruned and restarted
(`tf_lottery.lottery.rewind.reset_for_retrain`), and trains to the end, as
open_lth does. After each level the configured controls train as branches
on the main line's mask (`kinds/controls.py`).

The loop knows its collaborators only as plug-ins, which
`runner.replicate_for` chooses from the config:

- the network (`network.Network`, or `pretrain.PretrainedNetwork` when
  `config.pretrain` asks for it): `build(services)`;
- the level starts (`level_start.IterativePruning`, IMP from level k-1, or
  `OneShotPruning`, level 0's network pruned to IMP level k's sparsity, as
  the `oneshot` kind plugs in), scored by `config.pruning.scorer`;
- distillation (`distilled_training.DistilledTraining`), only for a
  replicate with a line that distils.

What a kind plugs in (see `Line`): the main line and any further lines
(arms with their own IMP, e.g. the KD kinds' baselines, or the
`instability` kind's one line per rewind point), where each line restarts
(the rewind point, a point of its own, or initialisation; level 0 records
every line's point), whether it retrains on the soft labels of the
replicate's dense network (knowledge distillation, Ma et al. 2021), and the
data (`runner.run_levels(load_data=...)`, e.g. the `transfer` kind's class subset).
Kinds that act while a level trains (`gradual`, `early_bird`, `rigl`, `set`,
`static`) plug in a `Training`: the trainer hooks that run the library
callbacks, their own level starts and metrics. What a kind measures on the
trained lines (copies trained from a restart point, training on another
task) is its analysis (`runner.run_levels(analysis=...)`), which trains and
resumes as a level does (`LevelContext.train_from`) and stores each finished
result once (`read_or_compute`). Every plug-in sees the replicate through a
`level_context.LevelContext` (the model, the stored states and the run's
services: store, data, log, progress, strategy, seeds), never the whole
config: it is made with the config group it reads.
The loop, the store, resuming and the results are the same for every kind.

Every level is one directory of the run store, written atomically and
resumed from its last checkpoint; its start is recomputed from the stored
files and checked against the stored `start.npz` (`level_record.py`: the
start, the `end.npz` ticket and the metrics record), so a run resumed with
changed code or options stops instead of mixing results; a level's
`metrics.json` is written once (the first finished result wins), so
processes sharing a workdir never overwrite each other's levels.
`tf_lottery.experiments.runner.run_levels` runs the selected replicates and
builds the results.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import ml_collections

from tf_lottery.core.report import sparsity_report
from tf_lottery.experiments import level_record, run_store, tensorboard, trainer
from tf_lottery.experiments.kinds import controls
from tf_lottery.experiments.level_context import LevelContext
from tf_lottery.experiments.optimizers import to_steps
from tf_lottery.experiments.run_services import RunServices
from tf_lottery.lottery.rewind import RewindPoint, Snapshot
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.utils import atomic_io


@dataclass(frozen=True)
class Line:
    """One IMP sequence of a replicate, as a kind plugs it into the loop.

    Attributes:
        name: str. Its name in results (`"ticket"` for the lottery kinds'
            main line; an arm's name otherwise, also its branch directory).
        from_init: bool. Levels >= 1 restart from initialisation (step 0)
            instead of the rewind point `config.pruning.rewind_to`.
        distil: bool. Levels >= 1 retrain on the soft labels of the
            replicate's dense network (level 0) with `KDDistiller`
            (`config.kd.weight`, `config.kd.temperature`).
        restart: str or None. Levels >= 1 restart from this point of level
            0's training ('<N>it' or '<N>ep', weights and optimizer) instead
            of `config.pruning.rewind_to`. Not with `from_init`.
    """

    name: str
    from_init: bool = False
    distil: bool = False
    restart: str | None = None

    def __post_init__(self):
        if self.restart is not None:
            RewindPoint.parse(self.restart)
            if self.from_init:
                raise ValueError(
                    f"Invalid arguments for line {self.name!r}: `from_init=True` restarts at "
                    f"initialisation, `restart` elsewhere; pass one. Received: restart={self.restart!r}."
                )


class Training:
    """What a kind that acts *during* training plugs into the main line's levels.

    IMP-shaped kinds plug in nothing (this base class: the level starts of
    the kind's schedule, no hooks). `gradual`, `early_bird`, `rigl`, `set` and `static` prune,
    search or rewire while a level trains: they give the trainer hooks that
    run the library callbacks (`callback_hook.CallbackHook`), may set a
    level's start themselves, and add their own metrics. Each method gets
    the replicate's `LevelContext`; a plug-in is made with the config group
    it reads. The loop, the
    store, resuming, progress, the results and the plots stay the loop's.

    Attributes:
        check_start: bool. The loop writes `start.npz` and checks a resumed
            level's start against it. `False` for kinds that store their own
            start (or none).
        metadata_branch: bool. `end.npz`'s metadata names the branch.
    """

    check_start = True
    metadata_branch = True

    def done(self, context: LevelContext, level: int, branch: str | None = None) -> bool:
        """Whether level `level` is finished (its `metrics.json` by default)."""
        return run_store.is_done(context.level_dir(level, branch))

    def start(self, context: LevelContext, level: int) -> bool:
        """Sets the model to level `level`'s start; `False` leaves it to the kind's level starts."""
        return False

    def capture_steps(self, context: LevelContext, level: int) -> tuple[int, ...] | None:
        """Data steps of level `level` whose state the loop stores (None: the rewind points)."""
        return None

    def hooks(self, context: LevelContext, level: int, plan: trainer.LevelPlan) -> list:
        """The trainer hooks of level `level` (`trainer.train_level(hooks=...)`)."""
        return []

    def finish(self, context: LevelContext, level: int, result: dict, plan: trainer.LevelPlan) -> dict:
        """Metrics the kind adds to level `level`'s; `early_stop_after` (popped) bounds early stopping."""
        return {}


def read_or_compute(path: str, compute: Callable[[], dict]) -> dict:
    """The analysis stored at `path`, or `compute()` stored there (the first finished wins).

    A kind's analysis (e.g. the `instability` kind's copies) writes one JSON
    file when it is finished; a rerun reads it back instead of recomputing.
    """
    if not atomic_io.exists(path):
        result = json.loads(json.dumps(compute()))
        if atomic_io.write_json(path, result, overwrite=False):
            return result
    return read_analysis(path)


def read_analysis(path: str) -> dict:
    """The analysis that `read_or_compute` stored at `path`; a damaged one names the fix."""
    try:
        return atomic_io.read_json(path, expect=dict)
    except atomic_io.DamagedFileError as error:
        raise error.with_fix(
            f"Delete '{path}' and run the same command again: the analysis is computed anew."
        ) from error


def load_ticket(level_dir: str, name: str) -> Ticket:
    """The ticket file `name` (`start.npz`, `end.npz`) of the level in `level_dir`; a damaged one names the fix."""
    path = os.path.join(level_dir, name)
    try:
        return Ticket.load(path)
    except atomic_io.DamagedFileError as error:
        raise error.with_fix(run_store.recompute_fix(level_dir, path)) from error


@dataclass(frozen=True)
class TrainingSteps:
    """A run's training in data steps on its data: all the level loop reads of the config's numbers.

    Resolved once by `check_steps` (from `config.train`,
    `config.run.checkpoint_every` and `config.pruning.rewind_to`); the loop
    plans every level from it.

    Attributes:
        steps_per_epoch: int. Data steps per epoch at `batch_size`.
        total_steps: int. The data steps of a level's training.
        rewind_step: int. The data step of `config.pruning.rewind_to`.
        batch_size: int. `config.train.batch_size`.
        eval_every: int. Data steps between evaluations (at least 1).
        checkpoint_every: int. Data steps between checkpoints (at least 1).
        eval_test: bool. Evaluate on the test set.
        eval_train: bool. Evaluate on the training set too.
    """

    steps_per_epoch: int
    total_steps: int
    rewind_step: int
    batch_size: int
    eval_every: int
    checkpoint_every: int
    eval_test: bool
    eval_train: bool


def check_steps(config: ml_collections.ConfigDict, data, lines=()) -> TrainingSteps:
    """The `TrainingSteps` of `config` on `data`, checked.

    The checks of config values that only the data's size decides
    (`train.batch_size`, `train.training_steps`, `pruning.rewind_to`, the
    restart points of `lines`): a kind runs them before it writes anything.
    """
    train = config.train
    steps_per_epoch = data.steps_per_epoch(int(train.batch_size))
    total_steps = to_steps(train.training_steps, steps_per_epoch)
    rewind_step = to_steps(config.pruning.rewind_to, steps_per_epoch)
    if total_steps < 1:
        raise ValueError(
            f"Invalid value for `config.train.training_steps`: expected at least one step. "
            f"Received: training_steps={train.training_steps!r}."
        )
    if rewind_step >= total_steps:
        raise ValueError(
            f"Invalid value for `config.pruning.rewind_to`: {config.pruning.rewind_to!r} is step "
            f"{rewind_step}, not before the end of training (step {total_steps})."
        )
    for line in lines:
        if line.restart is None or line.from_init:
            continue
        step = to_steps(line.restart, steps_per_epoch)
        if step >= total_steps:
            raise ValueError(
                f"Invalid restart point of line {line.name!r}: {line.restart!r} is step {step}, "
                f"not before the end of training (step {total_steps})."
            )
    return TrainingSteps(
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        rewind_step=rewind_step,
        batch_size=int(train.batch_size),
        eval_every=max(1, to_steps(train.eval_every, steps_per_epoch)),
        checkpoint_every=max(1, to_steps(config.run.checkpoint_every, steps_per_epoch)),
        eval_test=bool(train.eval_test),
        eval_train=bool(train.get("eval_on_train", False)),
    )


class Replicate:
    """One replicate (one seed) of an experiment: a model and its levels.

    Args:
        steps: `TrainingSteps`. The run's training on `data` (`check_steps`).
        store: RunStore. Where the levels are written.
        replicate: int. Replicate index.
        data: A data pipeline (see `tf_lottery.data.registry`).
        seed: int. The replicate's initialisation seed (`config.seed + replicate`).
        data_seed: int. Its data order (`config.train.data_order_seed`, or `seed`).
        strategy: tf.distribute.Strategy. Where the model is built and trained
            (`config.run.strategy`).
        experiment: str. The kind's name, for the metrics records.
        verbose: int. `config.run.verbose`: 1 logs each level, 2 each evaluation.
        tensorboard: bool. `config.run.tensorboard`: write TensorBoard summaries.
        log: Callable taking a str, for progress lines.
        main: Line. The main line (directories `round_<k>`). Defaults to
            the lottery ticket, restarting from the rewind point.
        arms: Further lines with their own IMP (directories
            `branch_<name>/round_<k>`), sharing level 0.
        progress: Optional `progress.RunProgress` (or anything with its
            `advance(steps, trained)`), told of every data step done.
        training: Optional `Training`: what a kind plugs into the main
            line's levels when it acts during training.
        network: What builds and compiles the model (`build(services)`):
            `network.Network`, or `pretrain.PretrainedNetwork` when
            `config.pretrain` asks for it.
        starts: How a level's start is set (`start(context, level)` for the
            main line, `start_arm(context, line, level)` for an arm,
            `source_level(level)`): `level_start.IterativePruning` (IMP) or
            `OneShotPruning`.
        distillation: Optional callable `(context)` returning the KD lines'
            `DistilledTraining` on the replicate's `LevelContext`; given
            only when a line distils.

    `runner.replicate_for(config, ...)` resolves these from the config and
    chooses the plug-ins. The loop sees them only through these methods.

    Level 0 records the state (weights and optimizer) at the rewind point
    `config.pruning.rewind_to` (`rewind.npz`) and at every line's own
    restart point (`rewind_<step>.npz`).
    """

    def __init__(
        self,
        steps: TrainingSteps,
        store,
        replicate: int,
        data,
        *,
        seed: int,
        data_seed: int,
        strategy,
        experiment: str,
        verbose: int = 0,
        tensorboard: bool = False,
        log=print,
        main: Line | None = None,
        arms: tuple = (),
        progress=None,
        training: Training | None = None,
        network,
        starts,
        distillation: Callable | None = None,
    ):
        self.steps = steps
        self.experiment, self.verbose, self.tensorboard = experiment, int(verbose), bool(tensorboard)
        self.training = training or Training()
        self.main = main or Line("ticket")
        self.arms = {arm.name: arm for arm in arms}
        self.store = store
        self.replicate = replicate
        self.data = data
        self.log = log
        self.seed, self.data_seed = seed, data_seed
        self.steps_per_epoch, self.total_steps = steps.steps_per_epoch, steps.total_steps
        self.rewind_step = steps.rewind_step
        restarting = [line for line in (self.main, *self.arms.values()) if not line.from_init]
        self.capture_steps = tuple(sorted({self.rewind_step, *map(self.restart_step, restarting)}))
        self.strategy = strategy
        self.services = RunServices(
            store=store,
            data=data,
            log=log,
            progress=progress,
            strategy=self.strategy,
            replicate=replicate,
            seed=self.seed,
            data_seed=self.data_seed,
        )
        self.starts = starts
        self.model = network.build(self.services)
        with self.strategy.scope():
            self.initial = Snapshot.capture(self.model, 0)
        self._captured = {}
        self.context = LevelContext(self)
        self._distillation = distillation(self.context) if distillation is not None else None

    # -- stored states ------------------------------------------------------

    def level_dir(self, level: int, branch: str | None = None) -> str:
        return self.store.level_dir(self.replicate, level, branch)

    def source_level(self, level: int) -> int:
        """The level whose trained network level `level` is pruned from (the kind's `starts`)."""
        return self.starts.source_level(level)

    def _capture_path(self, step: int) -> str:
        return self.store.rewind_path(self.replicate, None if step == self.rewind_step else step)

    def rewind_snapshot(self, step: int | None = None) -> Snapshot:
        """The state level 0 recorded at data step `step` (default: the rewind point)."""
        step = self.rewind_step if step is None else step
        if step not in self._captured:
            path = self._capture_path(step)
            if not atomic_io.exists(path):
                raise FileNotFoundError(
                    f"The rewind point '{path}' is missing: level 0 of this replicate must run first."
                )
            try:
                self._captured[step], _ = run_store.load_state(path)
            except atomic_io.DamagedFileError as error:
                # Level 0 writes it when its training passes `step`.
                level0 = self.level_dir(0)
                checkpoint = os.path.join(level0, trainer.CHECKPOINT)
                raise error.with_fix(run_store.recompute_fix(level0, path, checkpoint)) from error
        return self._captured[step]

    def line(self, branch: str | None) -> Line | None:
        """The line of `branch` (None: the main line); None for a control branch."""
        return self.main if branch is None else self.arms.get(branch)

    def restart_point(self, line: Line | None = None) -> Snapshot:
        """Where levels >= 1 of `line` (default: the main line and its controls) restart."""
        line = line or self.main
        return self.initial if line.from_init else self.rewind_snapshot(self.restart_step(line))

    def restart_step(self, line: Line | None = None) -> int:
        line = line or self.main
        if line.from_init:
            return 0
        if line.restart is None:
            return self.rewind_step
        return to_steps(line.restart, self.steps_per_epoch)

    def _capture(self, step: int) -> None:
        self._captured[step] = Snapshot.capture(self.model, step)
        run_store.save_state(self._capture_path(step), self._captured[step])

    def load_end(self, level: int, branch: str | None = None) -> None:
        """Sets the model's masks and weights to the end of a finished level."""
        load_ticket(self.level_dir(level, branch), "end.npz").apply(self.model)

    def final_state(self, level: int) -> Snapshot:
        """The trained state (weights and optimizer) of finished level `level`: its last checkpoint."""
        path = os.path.join(self.level_dir(level), trainer.CHECKPOINT)
        try:
            snapshot, _ = run_store.load_state(path)
        except atomic_io.DamagedFileError as error:
            raise error.with_fix(run_store.recompute_fix(self.level_dir(level), path)) from error
        return snapshot

    def level_masks(self, level: int, branch: str | None = None) -> list:
        """The ticket masks of level `level` of the main line or of `branch` (its start file)."""
        return load_ticket(self.level_dir(level, branch), "start.npz").masks

    # -- distillation -------------------------------------------------------

    def _fitting(self, line: Line | None):
        """`(model to fit, training data)` of a line: the distiller for KD lines, else defaults."""
        if line is None or not line.distil:
            return None, None
        return self._distillation.fitting()

    # -- running ------------------------------------------------------------

    def _start_step(self, level: int, branch: str | None) -> int:
        if level == 0:
            return 0
        line = self.line(branch)
        return (
            self.restart_step(line)
            if branch is None or line is not None
            else controls.start_step(self.context, branch)
        )

    def _plan(self, level: int, branch: str | None = None) -> trainer.LevelPlan:
        steps = self.steps
        return trainer.LevelPlan(
            start=self._start_step(level, branch),
            end=steps.total_steps,
            steps_per_epoch=steps.steps_per_epoch,
            batch_size=steps.batch_size,
            seed=self.data_seed,
            eval_every=steps.eval_every,
            checkpoint_every=steps.checkpoint_every,
            capture_steps=self._capture_steps(level, branch),
            eval_test=steps.eval_test,
            eval_train=steps.eval_train,
        )

    def _capture_steps(self, level: int, branch: str | None) -> tuple[int, ...]:
        own = self.training.capture_steps(self.context, level) if branch is None else None
        if own is not None:
            return tuple(own)
        return self.capture_steps if level == 0 else ()

    def planned_steps(self, levels: int, branches: list[str]) -> int:
        """The data steps that `run(levels, branches)` trains when nothing is done yet."""
        steps = self.total_steps
        for line in [self.main, *self.arms.values()]:
            steps += levels * (self.total_steps - self.restart_step(line))
        return steps + levels * sum(self.total_steps - controls.start_step(self.context, b) for b in branches)

    def run_level(self, level: int, branch: str | None = None) -> dict:
        """Trains one level (of the main run, or of a control branch) unless it is done."""
        directory = self.level_dir(level, branch)
        training = self.training if branch is None else Training()
        context = self.context
        if training.done(context, level, branch):
            plan = self._plan(level, branch)
            self.services.advance(plan.end - plan.start, trained=False)
            return run_store.read_metrics(directory)
        atomic_io.makedirs(directory)
        clock = time.perf_counter()
        line = self.line(branch)
        fit_model, fit_data = self._fitting(line) if level > 0 else (None, None)
        if branch is None:
            if not training.start(context, level):
                self.starts.start(context, level)
        elif line is not None:
            self.starts.start_arm(context, line, level)
        else:
            controls.start_branch(context, branch, level)
        report = sparsity_report(self.model)
        prune_s = time.perf_counter() - clock
        clock = time.perf_counter()
        if training.check_start:
            level_record.check_start(
                self.model,
                directory,
                {"level": level, "branch": branch, "replicate": self.replicate, "what": "start"},
            )
        store_s = time.perf_counter() - clock
        plan = self._plan(level, branch)
        hooks = training.hooks(context, level, plan)
        capture = self._capture if level == 0 and branch is None else None
        verbose = self.verbose
        label = self.main.name if branch is None else branch
        name = f"replicate {self.replicate} {label} round {level}"
        began, last = time.time(), [time.time()]
        summaries = None
        if self.tensorboard:
            root = tensorboard.level_dir(self.store.root, self.replicate, level, branch)
            summaries = tensorboard.LevelSummaries(root)

        def progress(record):
            if summaries is not None:
                summaries.write(record, sparsity_report(self.model).sparsity)
            if verbose >= 2 or (verbose and time.time() - last[0] > 60):
                last[0] = time.time()
                metrics = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "step")
                self.log(f"  {name}: step {record['step']}/{plan.end} {metrics}")

        result = trainer.train_level(
            self.model,
            self.data,
            plan,
            directory,
            on_capture=capture,
            progress=progress,
            fit_model=fit_model,
            train_data=fit_data,
            on_steps=self.services.advance,
            hooks=hooks,
        )
        if summaries is not None:
            summaries.close()
        if hooks:  # the hooks may have changed the masks while training
            report = sparsity_report(self.model)
        extra = dict(training.finish(context, level, result, plan))
        after = extra.pop("early_stop_after", 0)
        clock = time.perf_counter()
        metadata = {"level": level, "branch": branch, "replicate": self.replicate, "what": "end"}
        if not training.metadata_branch:
            del metadata["branch"]
        level_record.write_end(self.model, directory, plan.end, metadata)
        timing = dict(result["timing"])
        timing["prune_reset"] = prune_s
        timing["store"] += store_s + time.perf_counter() - clock
        metrics = level_record.metrics(
            experiment=self.experiment,
            branch=label,
            replicate=self.replicate,
            level=level,
            report=report,
            plan=plan,
            result=result,
            timing=timing,
            extra=extra,
            early_stop_after=after,
        )
        if not run_store.write_metrics(directory, metrics):
            # Another process finished this level first; its result is the level's.
            return run_store.read_metrics(directory)
        if verbose:
            final, early = metrics["final"], metrics["early_stop"]
            accuracy = final.get("test_accuracy", float("nan"))
            early_accuracy = early.get("test_accuracy", float("nan"))
            self.log(
                f"[{name:>34}] {report.percent_remaining:6.2f}% remaining  test acc {accuracy:.4f} "
                f"(early stop {early_accuracy:.4f} at step {early.get('step')})  {time.time() - began:.1f} s"
            )
        return metrics

    def train_from(self, directory: str, start: int, seed: int) -> dict:
        """Trains the model, as set, from data step `start` to the end with data order `seed`.

        For a kind's analysis beside the levels (e.g. copies of a network
        with other data orders): trained as a level is, through the trainer,
        resumed from the checkpoint in `directory`, and evaluated at the end.
        Once finished, a call restores the trained state without training.

        Returns:
            The trainer's result: `evals` (the final evaluation) and
            `elapsed_s`.
        """
        steps = self.steps
        atomic_io.makedirs(directory)
        plan = trainer.LevelPlan(
            start=start,
            end=steps.total_steps,
            steps_per_epoch=steps.steps_per_epoch,
            batch_size=steps.batch_size,
            seed=int(seed),
            eval_every=steps.total_steps,
            checkpoint_every=steps.checkpoint_every,
            eval_test=False,
        )
        return trainer.train_level(self.model, self.data, plan, directory)

    def run(self, levels: int, branches: list[str]) -> None:
        """Runs levels 0..`levels`; after each pruned level, the arms and the control branches."""
        for level in range(levels + 1):
            self.run_level(level)
            if level >= 1:
                for branch in [*self.arms, *branches]:
                    self.run_level(level, branch)
