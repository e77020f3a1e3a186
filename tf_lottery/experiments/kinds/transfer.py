"""The `transfer` experiment: a ticket found on task A, trained on task B.

Morcos et al. (2019) found winning tickets (masks plus their initial, or
late-rewound, weights) on one dataset and trained them on another, with the
output layer replaced for the new classes, against random tickets of the
same layer-wise sparsity. Here tasks A and B are two disjoint sets of
classes of one dataset (`transfer.source_classes`, `transfer.target_classes`;
by default MNIST-1D digits 0-5 and 6-9, so the classifier changes from 6 to
4 outputs), since no second dataset of the same input shape ships offline.

Per replicate:

1. IMP on A through the level loop (`tf_lottery.experiments.level_loop`,
   `run.levels` levels at `pruning.rate`, rewinding to `pruning.rewind_to`),
   on the classes of A only: `replicate_<r>/round_<l>/` of the run store.
   Its level-`l` masks (`start.npz`) are the tickets of the levels in
   `transfer.levels`.
2. IMP on B the same way in the store's part `target/` with
   `transfer.target_tickets` (else only its level 0): the dense network
   trained on B, and the tickets B finds itself.
3. On B, trained for `train.training_steps` from a fresh optimizer through
   the trainer (resumable, `target/replicate_<r>/transfer/round_<l>/<branch>/`):
   each transferred ticket (`tfl.Ticket.apply(model, transfer=True)`: masks
   and rewind weights from A, the new output layer dense with fresh
   weights); a random ticket of each (each layer's mask shuffled, so the
   same layer-wise sparsity, fresh random weights, output layer dense); and,
   with `transfer.target_tickets`, the ticket IMP found on B at the same
   level. The rows of level `l` are stored once, in
   `target/replicate_<r>/transfer/round_<l>/transfer.json`;
   `results/transfer.json` holds every finished row.

Example:

```python
from tf_lottery.experiments.kinds import transfer

summary = transfer.run_transfer(transfer.defaults(), "/tmp/runs")
print(summary["table"])
```

Reference:
    Morcos, Yu, Paganini & Tian, "One ticket to win them all: generalizing
    lottery ticket initializations across datasets and optimizers",
    NeurIPS 2019, arXiv:1906.02773.
"""

from __future__ import annotations

import functools
import os
import time

import ml_collections
import numpy as np

from tf_lottery.core.report import sparsity_report
from tf_lottery.core.walk import dense_masks, set_masks
from tf_lottery.data import classes
from tf_lottery.data.classes import class_subset
from tf_lottery.experiments import registry, run_store, support
from tf_lottery.experiments.level_context import LevelContext
from tf_lottery.experiments.level_loop import load_ticket, read_analysis, read_or_compute
from tf_lottery.experiments.network import build_network
from tf_lottery.experiments.runner import replicate_for, run_levels, selected_replicates
from tf_lottery.lottery import stability
from tf_lottery.lottery.rewind import Snapshot, reset_for_retrain
from tf_lottery.utils import atomic_io


def group_defaults() -> ml_collections.ConfigDict:
    """The `config.transfer` group."""
    group = ml_collections.ConfigDict()
    # Classes of task A (source) and task B (target): "0-5", "0,2,4", ...
    group.source_classes = "0-5"
    group.target_classes = "6-9"
    # IMP levels (1..run.levels) whose tickets are transferred.
    group.levels = "3,7,10"
    # Also find tickets on the target task (the in-domain reference).
    group.target_tickets = True
    return group


def defaults() -> ml_collections.ConfigDict:
    """MNIST-1D MLP, digits 0-5 -> 6-9, global IMP 20%/level to 89%, 3 replicates."""
    from tf_lottery.experiments.schema import defaults as runner_defaults

    config = runner_defaults()
    config.experiment = "transfer"
    config.train.batch_size = 100
    config.train.training_steps = "40ep"
    config.pruning.rate = 0.2
    config.pruning.scope = "global"
    config.run.levels = 10
    config.run.replicates = 3
    config.run.branches = ""
    config.run.steps_per_execution = 8
    config.transfer = group_defaults()
    return config


def parse_classes(spec: str, key: str = "transfer.source_classes") -> list[int]:
    """`"0-5"` -> `[0, 1, 2, 3, 4, 5]`, `"1,3,7-8"` -> `[1, 3, 7, 8]` (see `tf_lottery.data.classes`)."""
    return classes.parse_classes(spec, key)


def transfer_levels(config: ml_collections.ConfigDict) -> list[int]:
    """The IMP levels of `config.transfer.levels`, sorted, each in 1..`run.levels`."""
    try:
        levels = sorted({int(v) for v in str(config.transfer.levels).split(",") if v.strip()})
    except ValueError:
        levels = []
    if not levels or levels[0] < 1 or levels[-1] > int(config.run.levels):
        raise ValueError(
            f"Invalid value for `config.transfer.levels`: expected levels in 1..{config.run.levels} "
            f"(`config.run.levels`). Received: {config.transfer.levels!r}."
        )
    return levels


def analysis_path(store, replicate: int, level: int) -> str:
    """Where the target-task rows of the tickets of IMP level `level` are stored."""
    return os.path.join(store.replicate_dir(replicate), "transfer", f"round_{level}", "transfer.json")


def _analyse(context: LevelContext, source, level: int, target_tickets: bool, fresh_network, log) -> dict:
    """Trains the tickets of source level `level` (and B's own) on the target task of `context`.

    `fresh_network(seed)` builds the run's network from another seed (the random tickets' weights).
    """
    began = time.time()
    store, index, seed, model = context.store, context.replicate, context.seed, context.model
    source_dir = source.level_dir(index, level)
    ticket = load_ticket(source_dir, "start.npz")
    source_accuracy = run_store.read_metrics(source_dir)["final"]["test_accuracy"]
    # Random tickets get weights of another seed: a fresh random initialization.
    fresh = Snapshot(
        stability.model_values(fresh_network(seed + 7919)),
        context.initial.optimizer_values,
        0,
    )
    shuffled = [
        np.random.default_rng([seed, level, i]).permutation(m.ravel()).reshape(m.shape)
        for i, m in enumerate(ticket.masks)
    ]

    dense = dense_masks(model)

    def transferred() -> None:
        set_masks(model, dense)
        reset_for_retrain(model, "rewind", context.initial)
        ticket.apply(model, transfer=True)

    def random() -> None:
        set_masks(model, shuffled[:-1] + dense[-1:])
        reset_for_retrain(model, "rewind", fresh)

    def target_ticket() -> None:
        set_masks(model, dense)
        reset_for_retrain(model, "rewind", context.initial)
        load_ticket(store.level_dir(index, level), "start.npz").apply(model)

    setups = {"transferred": transferred, "random": random}
    if target_tickets:
        setups["target_ticket"] = target_ticket
    rows = []
    for branch, setup in setups.items():
        setup()
        report = sparsity_report(model)
        directory = os.path.join(os.path.dirname(analysis_path(store, index, level)), branch)
        result = context.train_from(directory, 0, seed)
        rows.append(
            {
                "replicate": index,
                "level": level,
                "branch": branch,
                "source_test_accuracy": source_accuracy,
                "sparsity": report.sparsity,
                "test_accuracy": result["evals"][-1]["test_accuracy"],
            }
        )
        log(
            f"[transfer] replicate {index} level {level:>2} {branch:>13}: {report.sparsity:6.1%} sparse, "
            f"target test accuracy {rows[-1]['test_accuracy']:.4f}"
        )
    return {"rows": rows, "elapsed_s": time.time() - began}


def _analyse_replicate(config, source, target, index: int, load_target, log) -> None:
    """Runs the target-task trainings of replicate `index` that are not stored yet."""
    # Built only if an analysis still has to run.
    context = functools.cache(lambda: replicate_for(config, target, index, load_target(), log=log).context)
    for level in transfer_levels(config):
        read_or_compute(
            analysis_path(target, index, level),
            lambda level=level: _analyse(
                context(),
                source,
                level,
                bool(config.transfer.target_tickets),
                lambda seed: build_network(config, context().data, seed),
                log,
            ),
        )


def collect(source, target, config: ml_collections.ConfigDict) -> list[dict]:
    """The dense network's row (level 0 on B) and every finished analysis's rows."""
    rows = []
    for replicate in range(int(config.run.replicates)):
        dense = target.level_dir(replicate, 0)
        if run_store.is_done(dense):
            metrics = run_store.read_metrics(dense)
            rows.append(
                {
                    "replicate": replicate,
                    "level": 0,
                    "branch": "dense",
                    "sparsity": metrics["sparsity"],
                    "test_accuracy": metrics["final"]["test_accuracy"],
                }
            )
        for level in transfer_levels(config):
            path = analysis_path(target, replicate, level)
            if atomic_io.exists(path):
                rows.extend(read_analysis(path)["rows"])
    return rows


def table(rows: list[dict]) -> str:
    """Target test accuracy, mean (min..max) over replicates, per level and branch."""
    branches = list(dict.fromkeys(r["branch"] for r in rows))
    lines = [f"{'level':>5} {'sparsity':>8} " + " ".join(f"{b:>24}" for b in branches)]
    for level in sorted({r["level"] for r in rows}):
        cells, sparsity = [], None
        for branch in branches:
            group = [r for r in rows if r["level"] == level and r["branch"] == branch]
            if not group:
                cells.append(f"{'':>24}")
                continue
            s = support.summary([r["test_accuracy"] for r in group])
            sparsity = sparsity if sparsity is not None else np.mean([r["sparsity"] for r in group])
            cells.append(f"{s['mean']:>10.4f} ({s['min']:.3f}..{s['max']:.3f})")
        lines.append(f"{level:>5} {sparsity:8.1%} " + " ".join(cells))
    return "\n".join(lines)


def describe(config: ml_collections.ConfigDict, task: str) -> str:
    classes = config.transfer.source_classes if task == "source" else config.transfer.target_classes
    return (
        f"transfer, IMP on the {task} task (classes {classes}) of {config.dataset.name} with "
        f"{config.model.name}: {config.pruning.scope} pruning {config.pruning.rate:.0%}/round, "
        f"rewind to {config.pruning.rewind_to}"
    )


def run_transfer(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) the transfer experiment `config` under `workdir`.

    IMP on the source and the target task runs through the level loop
    (`runner.run_levels`, the target task in the store's part
    `target/`); then each selected replicate's target-task trainings run
    unless they are stored. Writes, besides the level loop's files,
    `results/transfer.json` (every finished row) under
    `<workdir>/transfer/<hash>/`.

    Returns:
        `{"root", "hash", "rows", "table", "files", "levels", "elapsed_s"}`;
        `levels` holds what `run_levels` returned for the `source` and the
        `target` task.
    """
    from tf_lottery.data.registry import load_dataset

    _validate(config)
    began = time.time()
    data = functools.cache(lambda: load_dataset(config.dataset))
    load_source = functools.cache(lambda: class_subset(data(), parse_classes(config.transfer.source_classes)))
    load_target = functools.cache(
        lambda: class_subset(data(), parse_classes(config.transfer.target_classes, "transfer.target_classes"))
    )
    imp = {
        "source": run_levels(config, workdir, log, title=describe(config, "source"), load_data=load_source),
        # Level 0 is the dense network on B; IMP on B only for its own tickets.
        "target": run_levels(
            config,
            workdir,
            log,
            title=describe(config, "target"),
            load_data=load_target,
            part="target",
            levels=int(config.run.levels) if config.transfer.target_tickets else 0,
        ),
    }
    source = run_store.RunStore(workdir, config)
    target = run_store.RunStore(workdir, config, part="target")
    for index in selected_replicates(config):
        _analyse_replicate(config, source, target, index, load_target, log)
    rows = collect(source, target, config)
    return support.finish(
        source, "transfer", rows, table(rows), bool(config.run.verbose), log, began, levels=imp
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`defaults()`, or with `arg="smoke"` a run of seconds (for `--config=configs/transfer_mnist1d.py` with `:smoke`)."""
    config = defaults()
    if arg == "smoke":
        config.train.training_steps = "3ep"
        config.run.levels = 2
        config.run.replicates = 1
        config.transfer.levels = "1,2"
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config


def _validate(config: ml_collections.ConfigDict) -> None:
    support.validate(config, "transfer", group_defaults(), controls="its random tickets")
    parse_classes(config.transfer.source_classes)
    parse_classes(config.transfer.target_classes, "transfer.target_classes")
    transfer_levels(config)


registry.register(
    registry.Kind(
        name="transfer",
        run=run_transfer,
        defaults=defaults,
        validate=_validate,
        summary="ticket transfer: tickets found on source classes retrained on target classes",
    )
)
