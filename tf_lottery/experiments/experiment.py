"""`run_experiment(config, workdir)`: every replicate, level and control of a config.

Example:

```python
from tf_lottery.experiments import default_config, run_experiment

summary = run_experiment(default_config.get_config("smoke"), "/tmp/runs")
print(summary["table"])
```
"""

from __future__ import annotations

import time

import ml_collections

from tf_lottery.experiments import plots, results, run_store, schema
from tf_lottery.experiments.kinds.lottery import Replicate


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
    if config.run.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
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
