"""What the `gradual` and `early_bird` kinds share: runs that prune *during* training.

These kinds do not prune between trainings, as IMP does, but while one
training runs. They use the engine's pieces as the level loop does: a
`level_loop.Replicate` builds the model, optimizer and data inside the
configured strategy; `trainer.train_level` trains resumably, chunk by chunk,
calling `on_capture` at the data steps where the kind acts (prune, draw a
mask); the run store, the metrics files and the results table are the same.
A level here is one training run: `round_0` for gradual pruning; the
Early-Bird search (`round_0`) and the retrained ticket (`round_1`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import ml_collections

from tf_lottery.core.report import sparsity_report
from tf_lottery.experiments import results, run_store, trainer
from tf_lottery.experiments.level_loop import Replicate, check_exclude, check_steps
from tf_lottery.experiments.optimizers import to_steps
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.utils import atomic_io


def plan(replicate: Replicate, start: int, end: int, capture_steps=()) -> trainer.LevelPlan:
    """The level plan of `replicate`'s config from data step `start` to `end`."""
    config = replicate.config
    return trainer.LevelPlan(
        start=start,
        end=end,
        steps_per_epoch=replicate.steps_per_epoch,
        batch_size=int(config.train.batch_size),
        seed=replicate.data_seed,
        eval_every=max(1, to_steps(config.train.eval_every, replicate.steps_per_epoch)),
        checkpoint_every=max(1, to_steps(config.run.checkpoint_every, replicate.steps_per_epoch)),
        capture_steps=tuple(sorted(set(capture_steps))),
        eval_test=bool(config.train.eval_test),
        eval_train=bool(config.train.get("eval_on_train", False)),
    )


def finish(replicate: Replicate, directory: str, level: int, result: dict, plan_: trainer.LevelPlan, **extra):
    """Writes `end.npz` and `metrics.json` of a finished run (the first finished wins)."""
    model = replicate.model
    report = sparsity_report(model)
    Ticket.from_model(
        model,
        weights=Snapshot.capture(model, plan_.end).model_values,
        metadata={"level": level, "replicate": replicate.replicate, "what": "end"},
    ).save(os.path.join(directory, "end.npz"))
    evals = result["evals"]
    after = extra.pop("early_stop_after", 0)
    summary = trainer.summarize([e for e in evals if e["step"] >= after] or evals)
    metrics = {
        "experiment": replicate.config.experiment,
        "branch": replicate.main.name,
        "replicate": replicate.replicate,
        "level": level,
        "sparsity": report.sparsity,
        "percent_remaining": report.percent_remaining,
        "alive": report.alive,
        "total": report.total,
        "layers": {e.name: e.sparsity for e in report.layers},
        "start_step": plan_.start,
        "end_step": plan_.end,
        "evals": evals,
        "elapsed_s": result["elapsed_s"],
        **summary,
        **extra,
    }
    if not run_store.write_metrics(directory, metrics):
        return run_store.read_metrics(directory)
    return metrics


def run_replicates(
    config: ml_collections.ConfigDict,
    workdir: str,
    log: Callable[[str], None],
    run_one: Callable[[Replicate], None],
    *,
    title: str,
    main: str,
    levels: int,
    check: Callable | None = None,
) -> dict:
    """Runs `run_one` on every selected, unfinished replicate; returns the summary `run_levels` returns.

    `check(data)`, if given, runs on the loaded dataset before anything is
    written: a kind's checks that need the model (layer names in options).
    The steps (`level_loop.check_steps`) are checked then too.
    """
    from tf_lottery.data.registry import load_dataset
    from tf_lottery.experiments.level_loop import Line
    from tf_lottery.experiments.runner import selected_replicates

    began = time.time()
    store = run_store.RunStore(workdir, config)
    pending = [
        index
        for index in selected_replicates(config)
        if not all(run_store.is_done(store.level_dir(index, k)) for k in range(levels + 1))
    ]
    data = None
    if pending or check is not None:
        # Config values that the data's size (or the model) decides are checked before anything is written.
        data = load_dataset(config.dataset)
        check_steps(config, data)
        check_exclude(config, data)
        if check is not None:
            check(data)
    store.initialize()
    if config.run.verbose:
        log(f"{title}\nRun directory: {store.root}")
        reused = results.finished_levels(store, selected_replicates(config), levels, [])
        for line in results.reuse_lines(reused, store.root):
            log(line)
    for index in pending:
        run_one(Replicate(config, store, index, data, log=log, main=Line(main)))
    rows = results.collect(store, levels, int(config.run.replicates), [])
    files = results.write(store.results_dir, rows)
    text = results.table(rows, [], title=title, main=main)
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


def begin(directory: str) -> bool:
    """Creates a level directory; `False` when the level is already done."""
    if run_store.is_done(directory):
        return False
    atomic_io.makedirs(directory)
    return True


def checkpoint_position(directory: str, progress: tuple[str, ...] = ()) -> tuple[Snapshot, int] | None:
    """`(snapshot, data position)` of a level's last checkpoint, if any.

    A damaged checkpoint is dropped with the kind's in-progress files
    `progress` (see `trainer.read_checkpoint`): the level trains again from
    its start.
    """
    resumed = trainer.read_checkpoint(directory, progress)
    if resumed is None:
        return None
    snapshot, info = resumed
    return snapshot, info["position"]
