"""The `transfer` experiment: a ticket found on task A, trained on task B.

Morcos et al. (2019) found winning tickets (masks plus their initial, or
late-rewound, weights) on one dataset and trained them on another, with the
output layer replaced for the new classes, against random tickets of the
same layer-wise sparsity. Here tasks A and B are two disjoint sets of
classes of one dataset (`transfer.source_classes`, `transfer.target_classes`;
by default MNIST-1D digits 0-5 and 6-9, so the classifier changes from 6 to
4 outputs), since no second dataset of the same input shape ships offline.

Per replicate:

1. IMP on A (`run.levels` levels at `pruning.rate`, rewinding to
   `pruning.rewind_to`) records the masks of the levels in
   `transfer.levels`.
2. On B, trained for `train.training_steps` from a fresh optimizer: the
   dense network; each transferred ticket (`tfl.Ticket.apply(model,
   transfer=True)`: masks and rewind weights from A, the new output layer
   dense with fresh weights); a random ticket of each (each layer's mask
   shuffled, so the same layer-wise sparsity, fresh random weights, output
   layer dense); and, with `transfer.target_tickets`, the ticket IMP finds
   on B itself at the same level.

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

import dataclasses
import json
import os
import time

import ml_collections
import numpy as np

from tf_lottery.core.report import sparsity_report
from tf_lottery.experiments import registry
from tf_lottery.experiments import support as experiment_support
from tf_lottery.lottery import stability
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.utils import atomic_io
from tf_lottery.version import __version__

_FORMAT = f"tf_lottery.experiments.kinds.transfer/1 {__version__}"


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
    config.run.steps_per_execution = 8
    config.transfer = group_defaults()
    return config


def parse_classes(spec: str, key: str = "transfer.source_classes") -> list[int]:
    """`"0-5"` -> `[0, 1, 2, 3, 4, 5]`, `"1,3,7-8"` -> `[1, 3, 7, 8]`."""
    classes = []
    try:
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                continue
            low, _, high = item.partition("-")
            classes.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        classes = []
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"Invalid value for `config.{key}`: expected distinct class indices or ranges, e.g. '0-5' "
            f"or '1,3,7-8'. Received: {spec!r}."
        )
    return classes


def class_subset(data, classes: list[int]):
    """The pipeline restricted to `classes`, relabelled `0..len(classes)-1` in that order."""
    lookup = np.full(int(data.num_classes), -1, np.int64)
    if max(classes) >= data.num_classes:
        raise ValueError(
            f"Invalid class {max(classes)}: dataset '{data.name}' has classes 0..{data.num_classes - 1}."
        )
    lookup[classes] = np.arange(len(classes))

    def keep(x, y):
        chosen = lookup[np.asarray(y, np.int64)] >= 0
        return np.asarray(x)[chosen], lookup[np.asarray(y, np.int64)[chosen]]

    x_train, y_train = keep(data.x_train, data.y_train)
    x_val, y_val = keep(data.x_val, data.y_val)
    x_test, y_test = keep(data.x_test, data.y_test)
    return dataclasses.replace(
        data,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(classes),
    )


def _find_tickets(config, data, seed: int, levels: list[int]) -> tuple[dict, list, dict]:
    """IMP on `data`: `({level: masks}, rewind values, {level: test accuracy})`."""
    batch_size = int(config.train.batch_size)
    steps_per_epoch = data.steps_per_epoch(batch_size)
    total = experiment_support.steps(config.train.training_steps, steps_per_epoch)
    rewind_step = experiment_support.steps(config.pruning.rewind_to, steps_per_epoch)
    model = experiment_support.build(config, data, seed)
    experiment_support.train(model, data, 0, rewind_step, batch_size, seed)
    rewind = Snapshot.capture(model, rewind_step)
    experiment_support.train(model, data, rewind_step, total, batch_size, seed)
    found, accuracy = {}, {}

    def on_level(level, trained):
        if level in levels:
            found[level] = experiment_support.masks(trained)
            accuracy[level] = 1.0 - stability.error_rate(trained, data.eval_batches("test"))

    experiment_support.imp(
        model, data, config, rewind, stability.model_values(model), max(levels), seed, on_level=on_level
    )
    return found, rewind.model_values, accuracy


def _train_on_target(config, data, seed: int, setup, init_seed: int | None = None) -> dict:
    """Builds the target model (initialized from `init_seed`), applies `setup`, trains with data order `seed`."""
    batch_size = int(config.train.batch_size)
    total = experiment_support.steps(config.train.training_steps, data.steps_per_epoch(batch_size))
    model = experiment_support.build(config, data, seed if init_seed is None else init_seed)
    setup(model)
    report = sparsity_report(model)
    experiment_support.train(model, data, 0, total, batch_size, seed)
    return {
        "sparsity": report.sparsity,
        "test_accuracy": 1.0 - stability.error_rate(model, data.eval_batches("test")),
    }


def run_replicate(config, data, replicate: int, log=print) -> list[dict]:
    seed = int(config.seed) + replicate
    source = class_subset(data, parse_classes(config.transfer.source_classes))
    target = class_subset(data, parse_classes(config.transfer.target_classes, "transfer.target_classes"))
    levels = sorted({int(v) for v in config.transfer.levels.split(",") if v.strip()})
    if not levels or levels[0] < 1 or levels[-1] > int(config.run.levels):
        raise ValueError(
            f"Invalid value for `config.transfer.levels`: expected levels in 1..{config.run.levels} "
            f"(`config.run.levels`). Received: {config.transfer.levels!r}."
        )
    began = time.time()
    tickets, rewind_values, source_accuracy = _find_tickets(config, source, seed, levels)
    own = _find_tickets(config, target, seed, levels) if config.transfer.target_tickets else None
    rows = [
        {
            "replicate": replicate,
            "level": 0,
            "branch": "dense",
            **_train_on_target(config, target, seed, lambda m: None),
        }
    ]
    for level in levels:
        ticket = Ticket(masks=tickets[level], mask_names=[""] * len(tickets[level]), weights=rewind_values)
        masks = tickets[level]
        shuffled = [
            np.random.default_rng([seed, level, i]).permutation(m.ravel()).reshape(m.shape)
            for i, m in enumerate(masks)
        ]

        def random_ticket(model, shuffled=shuffled):
            current = experiment_support.masks(model)
            experiment_support.set_masks(model, shuffled[:-1] + [np.ones(current[-1].shape, bool)])

        branches = {
            "transferred": lambda model, ticket=ticket: ticket.apply(model, transfer=True),
            "random": random_ticket,
        }
        if own is not None:
            own_ticket = Ticket(masks=own[0][level], mask_names=[""] * len(masks), weights=own[1])
            branches["target_ticket"] = lambda model, t=own_ticket: t.apply(model)
        for branch, setup in branches.items():
            # Random tickets get weights of another seed: a fresh random initialization.
            init_seed = seed + 7919 if branch == "random" else None
            result = _train_on_target(config, target, seed, setup, init_seed=init_seed)
            rows.append(
                {
                    "replicate": replicate,
                    "level": level,
                    "branch": branch,
                    "source_test_accuracy": source_accuracy[level],
                    **result,
                }
            )
    for row in rows:
        log(
            f"[transfer] replicate {replicate} level {row['level']:>2} {row['branch']:>13}: "
            f"{row['sparsity']:6.1%} sparse, target test accuracy {row['test_accuracy']:.4f}"
        )
    log(f"[transfer] replicate {replicate} done in {time.time() - began:.0f} s")
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
            s = experiment_support.summary([r["test_accuracy"] for r in group])
            sparsity = sparsity if sparsity is not None else np.mean([r["sparsity"] for r in group])
            cells.append(f"{s['mean']:>10.4f} ({s['min']:.3f}..{s['max']:.3f})")
        lines.append(f"{level:>5} {sparsity:8.1%} " + " ".join(cells))
    return "\n".join(lines)


def run_transfer(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or reuses the finished replicates of) the transfer experiment `config`.

    Writes `<workdir>/transfer/<hash>/`: `replicate_<r>.json`,
    `results.json` and `config.json`.

    Returns:
        `{"root", "rows", "table", "files", "elapsed_s"}`.
    """
    from tf_lottery.data.registry import load_dataset
    from tf_lottery.experiments.config_hash import config_hash

    _validate(config)
    began = time.time()
    root = os.path.join(workdir, "transfer", config_hash(config))
    os.makedirs(root, exist_ok=True)
    atomic_io.write_json(os.path.join(root, "config.json"), json.loads(config.to_json()))
    data = {}

    def run_one(replicate):
        if "value" not in data:  # loaded only if some replicate still has to run
            data["value"] = load_dataset(config.dataset)
        return run_replicate(config, data["value"], replicate, log=log)

    rows = experiment_support.cached_replicates(root, int(config.run.replicates), _FORMAT, run_one)
    files = {"results": os.path.join(root, "results.json")}
    atomic_io.write_json(files["results"], {"format": _FORMAT, "rows": rows})
    text = table(rows)
    if config.run.verbose:
        log(text)
        log(f"Results: {root}")
    return {"root": root, "rows": rows, "table": text, "files": files, "elapsed_s": time.time() - began}


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
    experiment_support.validate(config, "transfer", group_defaults())
    parse_classes(config.transfer.source_classes)
    parse_classes(config.transfer.target_classes, "transfer.target_classes")


registry.register(
    registry.Kind(
        name="transfer",
        run=run_transfer,
        defaults=defaults,
        validate=_validate,
        summary="ticket transfer: tickets found on source classes retrained on target classes",
    )
)
