"""The level loop of one replicate: IMP (or one-shot) levels, then their controls.

Level 0 trains the dense network from data step 0 to the end of training
and records the rewind point on the way. Level k >= 1 prunes the network
that level k-1 trained (`experiment="lottery"`, iterative magnitude
pruning) or the dense network of level 0 to IMP level k's sparsity
(`experiment="oneshot"`), resets it according to `pruning.retrain`, and
trains from the rewind step to the end, as open_lth does. After each level
the configured controls train as branches on its mask (`controls.py`).

Every level is one directory of the run store, written atomically and
resumed from its last checkpoint; its start is recomputed from the stored
files and checked against the stored `start.npz`, so a run resumed with
changed code or options stops instead of mixing results.
"""

from __future__ import annotations

import fnmatch
import os
import time

import keras
import ml_collections
import numpy as np

from tf_lottery.core.prunable import prunable
from tf_lottery.core.report import sparsity_report
from tf_lottery.experiments import plots, registry, results, run_store, schema, trainer
from tf_lottery.experiments.kinds import controls
from tf_lottery.experiments.optimizers import build_optimizer, to_steps
from tf_lottery.experiments.schema import csv_list, parse_rates
from tf_lottery.experiments.strategy import make_strategy, steps_per_execution
from tf_lottery.lottery.rewind import Snapshot, reset_for_retrain
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.models import build_model
from tf_lottery.pruning.pruner import prune
from tf_lottery.utils import failpoints


def _exclusion(patterns: list[str]):
    return lambda layer: any(fnmatch.fnmatchcase(layer.name, p) for p in patterns)


class Replicate:
    """One replicate (one seed) of an experiment: a model and its levels.

    Args:
        config: ConfigDict. A validated experiment config.
        store: RunStore. Where the levels are written.
        replicate: int. Replicate index; its seed is `config.seed + replicate`.
        data: A data pipeline (see `tf_lottery.data.registry`).
        log: Callable taking a str, for progress lines.
    """

    def __init__(self, config, store, replicate: int, data, log=print):
        self.config = config
        self.store = store
        self.replicate = replicate
        self.data = data
        self.log = log
        self.seed = int(config.seed) + int(replicate)
        train = config.train
        self.steps_per_epoch = data.steps_per_epoch(int(train.batch_size))
        self.total_steps = to_steps(train.training_steps, self.steps_per_epoch)
        self.rewind_step = to_steps(config.pruning.rewind_to, self.steps_per_epoch)
        if self.total_steps < 1:
            raise ValueError(
                f"Invalid value for `config.train.training_steps`: expected at least one step. "
                f"Received: training_steps={train.training_steps!r}."
            )
        if self.rewind_step >= self.total_steps:
            raise ValueError(
                f"Invalid value for `config.pruning.rewind_to`: {config.pruning.rewind_to!r} is step "
                f"{self.rewind_step}, not before the end of training (step {self.total_steps})."
            )
        self.layer_rates = parse_rates(config.pruning.layer_rates)
        self.strategy = make_strategy(config.run.strategy)
        keras.utils.set_random_seed(self.seed)
        model_options = {k: v for k, v in config.model.items() if k != "name"}
        exclude = csv_list(config.pruning.exclude)
        with self.strategy.scope():
            base = build_model(config.model.name, data.input_shape, data.num_classes, **model_options)
            self.model = prunable(base, exclude=_exclusion(exclude) if exclude else None)
            self.model.compile(
                optimizer=build_optimizer(train, self.steps_per_epoch),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                steps_per_execution=steps_per_execution(
                    config.run.strategy, int(config.run.steps_per_execution)
                ),
            )
            self.model.optimizer.build(self.model.trainable_variables)
            self.initial = Snapshot.capture(self.model, 0)
        self._rewind = None

    # -- stored states ------------------------------------------------------

    def level_dir(self, level: int, branch: str | None = None) -> str:
        return self.store.level_dir(self.replicate, level, branch)

    def source_level(self, level: int) -> int:
        """The level whose trained network level `level` is pruned from."""
        return 0 if self.config.experiment == "oneshot" else level - 1

    def rewind_snapshot(self) -> Snapshot:
        if self._rewind is None:
            path = self.store.rewind_path(self.replicate)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"The rewind point '{path}' is missing: level 0 of this replicate must run first."
                )
            self._rewind, _ = run_store.load_state(path)
        return self._rewind

    def _save_rewind(self, step: int) -> None:
        self._rewind = Snapshot.capture(self.model, step)
        run_store.save_state(self.store.rewind_path(self.replicate), self._rewind)

    def load_end(self, level: int, branch: str | None = None) -> None:
        """Sets the model's masks and weights to the end of a finished level."""
        Ticket.load(os.path.join(self.level_dir(level, branch), "end.npz")).apply(self.model)

    def final_state(self, level: int) -> Snapshot:
        snapshot, _ = run_store.load_state(os.path.join(self.level_dir(level), trainer.CHECKPOINT))
        return snapshot

    def level_masks(self, level: int) -> list:
        """The ticket masks of main-run level `level` (from its start file)."""
        return Ticket.load(os.path.join(self.level_dir(level), "start.npz")).masks

    # -- level starts -------------------------------------------------------

    def _start_main(self, level: int) -> None:
        model = self.model
        if level == 0:
            controls.set_masks(model, controls.dense_masks(model))
            reset_for_retrain(model, "rewind", self.initial)
            return
        config = self.config.pruning
        source = self.source_level(level)
        self.load_end(source)
        if self.config.experiment == "oneshot":
            controls.set_masks(model, controls.dense_masks(model))
            target = 1.0 - (1.0 - config.rate) ** level
            rates = {p: 1.0 - (1.0 - r) ** level for p, r in self.layer_rates.items()}
            prune(model, target_sparsity=target, scope=config.scope, layer_rates=rates)
        else:
            prune(model, config.rate, scope=config.scope, layer_rates=self.layer_rates)
        failpoints.reach("after_prune")
        reset_for_retrain(
            model,
            config.retrain,
            self.rewind_snapshot(),
            # The weights are the loaded end of `source`; its optimizer state is in the checkpoint.
            trained=self.final_state(source) if config.retrain == "finetune" else None,
            seed=controls.derive_seed(self.seed, level, 1),
        )

    # -- running ------------------------------------------------------------

    def _plan(self, level: int) -> trainer.LevelPlan:
        run, train = self.config.run, self.config.train
        return trainer.LevelPlan(
            start=0 if level == 0 else self.rewind_step,
            end=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            batch_size=int(train.batch_size),
            seed=self.seed,
            eval_every=max(1, to_steps(train.eval_every, self.steps_per_epoch)),
            checkpoint_every=max(1, to_steps(run.checkpoint_every, self.steps_per_epoch)),
            rewind_step=self.rewind_step if level == 0 else None,
            eval_test=bool(train.eval_test),
        )

    def run_level(self, level: int, branch: str | None = None) -> dict:
        """Trains one level (of the main run, or of a control branch) unless it is done."""
        directory = self.level_dir(level, branch)
        if run_store.is_done(directory):
            return run_store.read_metrics(directory)
        os.makedirs(directory, exist_ok=True)
        if branch is None:
            self._start_main(level)
        else:
            controls.start_branch(self, branch, level)
        self._check_start(directory, level, branch)
        report = sparsity_report(self.model)
        plan = self._plan(level)
        rewind = self._save_rewind if level == 0 and branch is None else None
        verbose = int(self.config.run.verbose)
        name = f"replicate {self.replicate} {'ticket' if branch is None else branch} round {level}"
        began, last = time.time(), [time.time()]

        def progress(record):
            if verbose >= 2 or (verbose and time.time() - last[0] > 60):
                last[0] = time.time()
                metrics = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "step")
                self.log(f"  {name}: step {record['step']}/{plan.end} {metrics}")

        result = trainer.train_level(
            self.model, self.data, plan, directory, on_rewind=rewind, progress=progress
        )
        Ticket.from_model(
            self.model,
            weights=Snapshot.capture(self.model, plan.end).model_values,
            metadata={"level": level, "branch": branch, "replicate": self.replicate, "what": "end"},
        ).save(os.path.join(directory, "end.npz"))
        metrics = {
            "experiment": self.config.experiment,
            "branch": branch or "ticket",
            "replicate": self.replicate,
            "level": level,
            "sparsity": report.sparsity,
            "percent_remaining": report.percent_remaining,
            "alive": report.alive,
            "total": report.total,
            "layers": {f"{e.layer}/{e.weight}": e.sparsity for e in report.layers},
            "start_step": plan.start,
            "end_step": plan.end,
            "evals": result["evals"],
            "elapsed_s": result["elapsed_s"],
            **trainer.summarize(result["evals"]),
        }
        run_store.write_metrics(directory, metrics)
        if verbose:
            final, early = metrics["final"], metrics["early_stop"]
            accuracy = final.get("test_accuracy", float("nan"))
            early_accuracy = early.get("test_accuracy", float("nan"))
            self.log(
                f"[{name:>34}] {report.percent_remaining:6.2f}% remaining  test acc {accuracy:.4f} "
                f"(early stop {early_accuracy:.4f} at step {early.get('step')})  {time.time() - began:.1f} s"
            )
        return metrics

    def _check_start(self, directory: str, level: int, branch: str | None) -> None:
        path = os.path.join(directory, "start.npz")
        state = Snapshot.capture(self.model, 0)
        if os.path.exists(path):
            stored = Ticket.load(path)
            masks = controls.get_masks(self.model)
            same = len(stored.masks) == len(masks) and all(
                np.array_equal(a, b) for a, b in zip(stored.masks, masks)
            )
            same = same and all(np.array_equal(a, b) for a, b in zip(stored.weights, state.model_values))
            if not same:
                raise ValueError(
                    f"The stored start of '{directory}' differs from the one this code computes from the "
                    "stored files: the run was made by another version of tf_lottery or other options. "
                    "Use another `--workdir` or remove this run directory."
                )
            return
        Ticket.from_model(
            self.model,
            weights=state.model_values,
            metadata={"level": level, "branch": branch, "replicate": self.replicate, "what": "start"},
        ).save(path)

    def run(self, levels: int, branches: list[str]) -> None:
        """Runs levels 0..`levels`, and after each pruned level its control branches."""
        for level in range(levels + 1):
            self.run_level(level)
            if level >= 1:
                for branch in branches:
                    self.run_level(level, branch)


def _done(store, replicate: int, levels: int, branches: list[str]) -> bool:
    directories = [store.level_dir(replicate, k) for k in range(levels + 1)]
    directories += [store.level_dir(replicate, k, b) for b in branches for k in range(1, levels + 1)]
    return all(run_store.is_done(d) for d in directories)


def describe(config: ml_collections.ConfigDict) -> str:
    kind = "IMP" if config.experiment == "lottery" else "one-shot pruning"
    return (
        f"{kind} of {config.model.name} on {config.dataset.name}: {config.pruning.scope} pruning "
        f"{config.pruning.rate:.0%}/round"
        + (f" ({config.pruning.layer_rates})" if config.pruning.layer_rates else "")
        + f", retrain={config.pruning.retrain}, rewind to {config.pruning.rewind_to}"
    )


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) the experiment `config` under `workdir`.

    Finished levels are read back, not retrained; an unfinished level
    resumes from its last checkpoint. Writes `results/rounds.csv`,
    `results/rounds.json` and the plots.

    Args:
        config: ConfigDict. An experiment config (see `schema.defaults()`).
        workdir: str. Root directory of the run store.
        log: Callable taking a str. Defaults to `print`.

    Returns:
        A dict with `root` (the run directory), `hash`, `rows`, `table`,
        `files` (paths of the CSV, JSON and plots) and `elapsed_s`.
    """
    schema.validate(config)
    from tf_lottery.data.registry import load_dataset

    began = time.time()
    store = run_store.RunStore(workdir, config)
    store.initialize()
    branches = schema.csv_list(config.run.branches)
    levels, replicates = int(config.run.levels), int(config.run.replicates)
    if config.run.verbose:
        log(f"{describe(config)}\nRun directory: {store.root}")
    data = None
    for replicate in range(replicates):
        if _done(store, replicate, levels, branches):
            continue
        if data is None:
            data = load_dataset(config.dataset)
        Replicate(config, store, replicate, data, log=log).run(levels, branches)
    rows = results.collect(store, levels, replicates, branches)
    files = results.write(store.results_dir, rows)
    if config.run.plots and rows:
        files["plots"] = plots.plot_all(rows, store.results_dir, title=describe(config))
    text = results.table(rows, branches, title=describe(config))
    if config.run.verbose:
        log(text)
        log(f"Results: {store.results_dir}")
    return {
        "root": store.root,
        "hash": store.hash,
        "rows": rows,
        "table": text,
        "files": files,
        "elapsed_s": time.time() - began,
    }


def _validate(config: ml_collections.ConfigDict) -> None:
    schema.validate(config)


for _name, _summary in (
    ("lottery", "iterative magnitude pruning (IMP) with rewinding, and its controls as branches"),
    ("oneshot", "one-shot pruning of the dense network to each IMP level's sparsity, with controls"),
):
    registry.register(
        registry.Kind(
            name=_name, run=run_experiment, defaults=schema.defaults, validate=_validate, summary=_summary
        )
    )
