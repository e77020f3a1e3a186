"""Runs an IMP-shaped kind: every selected replicate through the level loop, then the results.

The store, resuming and the results are the same for every kind; several
processes (or machines, on a shared `tf.io.gfile` workdir) can run one
experiment: `config.run.only_replicates` splits the replicates between them,
each level's `metrics.json` is written once (the first finished result
wins), and each summary covers every level finished so far.

Example:

```python
from tf_lottery.experiments.default_config import get_config
from tf_lottery.experiments.level_loop import Line
from tf_lottery.experiments.runner import run_levels

summary = run_levels(get_config("smoke"), "/tmp/runs", main=Line("ticket"), title="IMP")
print(summary["table"])
```
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import ml_collections

from tf_lottery.experiments import plots, pretrain, progress, results, run_store, schema
from tf_lottery.experiments.distilled_training import DistilledTraining
from tf_lottery.experiments.level_context import LevelContext
from tf_lottery.experiments.level_loop import Line, Replicate, Training, check_steps
from tf_lottery.experiments.level_start import IterativePruning
from tf_lottery.experiments.strategy import make_strategy


def _done(store, replicate: int, levels: int, branches: list[str]) -> bool:
    directories = [store.level_dir(replicate, k) for k in range(levels + 1)]
    directories += [store.level_dir(replicate, k, b) for b in branches for k in range(1, levels + 1)]
    return all(run_store.is_done(d) for d in directories)


def selected_replicates(config: ml_collections.ConfigDict) -> list[int]:
    """The replicates this process runs: `config.run.only_replicates`, or all of them."""
    replicates = int(config.run.replicates)
    chosen = schema.parse_replicates(config.run.only_replicates, replicates)
    return chosen if chosen is not None else list(range(replicates))


def replicate_for(
    config: ml_collections.ConfigDict,
    store,
    index: int,
    data,
    *,
    log: Callable[[str], None] = print,
    main: Line | None = None,
    arms: tuple = (),
    progress=None,
    training: Training | None = None,
    starts: IterativePruning | None = None,
) -> Replicate:
    """Replicate `index` of `config`: the config resolved into plain values, and the plug-ins it chooses.

    The replicate gets no config: its `TrainingSteps` on `data`
    (`check_steps`), its seeds, strategy and logging switches. The
    plug-ins: the network (`pretrain.network_for`: pretrained when
    `config.pretrain` asks for it), the level starts (`starts`, IMP's by
    default) and, only when a line distils, `DistilledTraining` on
    `config.kd`.
    """
    main = main or Line("ticket")
    distilling = any(line.distil for line in (main, *arms))
    seed = int(config.seed) + int(index)
    # open_lth's `data_order_seed`: one data order for every replicate when set.
    order_seed = int(config.train.get("data_order_seed", -1))
    steps = check_steps(config, data, (main, *arms))
    return Replicate(
        steps,
        store,
        index,
        data,
        seed=seed,
        data_seed=seed if order_seed < 0 else order_seed,
        strategy=make_strategy(config.run.strategy),
        experiment=config.experiment,
        verbose=int(config.run.verbose),
        tensorboard=bool(config.run.get("tensorboard", False)),
        log=log,
        main=main,
        arms=arms,
        progress=progress,
        training=training,
        network=pretrain.network_for(config),
        starts=starts or IterativePruning(config.pruning),
        distillation=functools.partial(DistilledTraining, config.kd) if distilling else None,
    )


def run_levels(
    config: ml_collections.ConfigDict,
    workdir: str,
    log: Callable[[str], None] = print,
    *,
    main: Line | None = None,
    arms: tuple = (),
    title: str = "",
    load_data: Callable[[], object] | None = None,
    part: str | None = None,
    levels: int | None = None,
    training: Training | None = None,
    starts: IterativePruning | None = None,
    check: Callable[[object], None] | None = None,
    analysis: Callable[[run_store.RunStore, int, Callable[[], LevelContext]], None] | None = None,
) -> dict:
    """Runs (or resumes) every selected replicate of an IMP-shaped kind under `workdir`.

    Finished levels are read back, not retrained; an unfinished level
    resumes from its last checkpoint. The results (`results/rounds.csv`,
    `results/rounds.json`, the plots and the table) cover every level that
    has finished in the store, whichever process ran it.

    Args:
        config: ConfigDict. A validated experiment config.
        workdir: str. Root directory of the run store (local or any
            `tf.io.gfile` path).
        log: Callable taking a str. Defaults to `print`. A
            `progress.RunProgress` also shows a bar with the run's ETA.
        main: Line. The main line. Defaults to `Line("ticket")`.
        arms: Lines with their own IMP, run beside the main line.
        title: str. What the run is, for the log and the table.
        load_data: Callable returning the data pipeline, called once if a
            replicate has to run. Defaults to
            `tf_lottery.data.registry.load_dataset(config.dataset)`.
        part: str or None. Run the replicates in this part of the run
            directory (see `run_store.RunStore`). Defaults to the run itself.
        levels: int or None. Levels to run. Defaults to `config.run.levels`.
        training: Optional `level_loop.Training`: what a kind that acts
            during training plugs into the main line's levels (hooks that
            run library callbacks, its own level starts and metrics).
        starts: How the main line's pruned levels are pruned
            (`level_start.IterativePruning` of `config.pruning`, the
            default, or `OneShotPruning`).
        check: Optional `check(data)`, run on the loaded data before
            anything is written, even when every replicate is done: a
            kind's checks that need the model (layer names in options).
        analysis: Optional `analysis(store, index, context)`: what a kind measures
            on replicate `index`'s finished lines, run for every selected
            replicate after the results are written. `context()` builds the
            replicate (`LevelContext`) on first call, so an analysis that is
            stored already builds nothing.

    Returns:
        A dict with `root` (the run directory), `hash`, `rows`, `table`,
        `files` (paths of the CSV, JSON and plots), `timing` (see
        `results.time_breakdown`, also in `rounds.json`) and `elapsed_s`.
    """
    from tf_lottery.data.registry import load_dataset

    main = main or Line("ticket")
    began = time.time()
    chosen = selected_replicates(config)
    load = functools.cache(load_data if load_data is not None else lambda: load_dataset(config.dataset))
    store = run_store.RunStore(workdir, config, part=part)
    controls_ = schema.csv_list(config.run.branches)
    branches = [arm.name for arm in arms] + controls_
    levels = int(config.run.levels) if levels is None else int(levels)
    replicates = int(config.run.replicates)
    data = None
    pending = [r for r in chosen if not _done(store, r, levels, branches)]
    if pending or check is not None:
        # Config values that the data's size decides are checked before anything is written.
        data = load()
        check_steps(config, data, (main, *arms))
        pretrain.network_for(config).check(data)
        if check is not None:
            check(data)
    store.initialize()
    reused = results.finished_levels(store, chosen, levels, branches)
    if config.run.verbose:
        log(f"{title}\nRun directory: {store.root}")
        for line in results.reuse_lines(reused, store.root):
            log(line)
    bar = progress.of(log)
    for index, replicate in enumerate(pending):
        runner = replicate_for(
            config,
            store,
            replicate,
            data,
            log=log,
            main=main,
            arms=arms,
            progress=bar,
            training=training,
            starts=starts,
        )
        if index == 0:  # every replicate trains the same steps
            bar.add(runner.planned_steps(levels, controls_) * len(pending))
        runner.run(levels, controls_)
    rows = results.collect(store, levels, replicates, branches)
    timing = results.time_breakdown(store, levels, replicates, branches)
    files = results.write(store.results_dir, rows, timing)
    if config.run.plots and rows:
        files["plots"] = plots.plot_all(rows, store.results_dir, title=title, main=main.name)
    text = results.table(rows, branches, title=title, main=main.name)
    if config.run.verbose:
        log(text)
        log(results.time_line(timing, reused=sum(len(v) for v in reused.values())))
        log(f"Results: {store.results_dir}")
    for index in chosen if analysis is not None else ():
        # Built only if an analysis still has to run.
        context = functools.cache(
            lambda index=index: (
                replicate_for(config, store, index, load(), log=log, main=main, arms=arms).context
            )
        )
        analysis(store, index, context)
    return {
        "root": store.root,
        "hash": store.hash,
        "rows": rows,
        "table": text,
        "files": files,
        "timing": timing,
        "elapsed_s": time.time() - began,
    }
