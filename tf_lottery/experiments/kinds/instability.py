"""The `instability` experiment: linear mode connectivity at rewind points.

For every rewind point `k` (Frankle et al. 2020, "Linear Mode Connectivity
and the Lottery Ticket Hypothesis"):

1. A parent run trains the dense network from initialization to the end of
   training with data order `seed`, keeping a snapshot (weights and
   optimizer) at each `k`.
2. Dense instability: from the snapshot at `k`, two copies train to the end
   with two other data orders; the error along the straight line between
   them is evaluated at `points` points (30 in the paper) on the training
   and test sets, giving the error barrier (max on the path minus the mean
   of the end points) and the L2 distance between the copies.
3. Sparse instability (`run.levels > 0`): IMP with rewinding to `k`
   (`run.levels` levels at `pruning.rate`) finds a subnetwork; two copies of
   it train from `k` and are compared the same way. So is the
   random-pruning control: each layer's IMP mask shuffled (the same
   layer-wise sparsity), from the same weights at `k`.
4. Stability to pruning (Frankle et al. 2019, "Stabilizing the LTH"): the L2
   distance, on the subnetwork's weights, between the subnetwork trained
   alone and the dense network trained from the same point with the same
   data order (copy A of each), for the IMP and the random subnetwork.

Errors are measured, like the papers, as top-1 classification error; the L2
distances are over the pruned weights (kernels) present in the subnetwork.

Example:

```python
from tf_lottery.experiments.kinds import instability

config = instability.defaults()
summary = instability.run_instability(config, "/tmp/runs")
print(summary["table"])
```

Reference:
    Frankle, Dziugaite, Roy & Carbin, ICML 2020, arXiv:1912.05671;
    Frankle, Dziugaite, Roy & Carbin, 2019, arXiv:1903.01611.
"""

from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np

from tf_lottery.experiments import registry
from tf_lottery.experiments import support as experiment_support
from tf_lottery.lottery import stability
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.utils import atomic_io
from tf_lottery.version import __version__

_FORMAT = f"tf_lottery.experiments.kinds.instability/2 {__version__}"


def group_defaults() -> ml_collections.ConfigDict:
    """The `config.instability` group."""
    group = ml_collections.ConfigDict()
    # Comma-separated rewind points, '<N>it' or '<N>ep'.
    group.rewind_points = "0it,200it"
    # Points on the linear path, end points included.
    group.points = 30
    # Recompute BatchNorm statistics at every point of the path (no effect without BatchNorm).
    group.recompute_batch_statistics = True
    return group


def defaults() -> ml_collections.ConfigDict:
    """The runner's defaults (MNIST-1D MLP, Adam) set up for instability: 40 epochs, IMP to 89%."""
    from tf_lottery.experiments.schema import defaults as runner_defaults

    config = runner_defaults()
    config.experiment = "instability"
    config.train.batch_size = 100
    config.train.training_steps = "40ep"
    config.pruning.rate = 0.2
    config.pruning.scope = "global"
    config.run.levels = 10
    config.run.steps_per_execution = 20
    config.instability = group_defaults()
    return config


def _copies(model, data, config, snapshot, seed, total):
    """Two copies trained from `snapshot` with data orders of seeds `seed + 1` and `seed + 2`."""
    batch_size = int(config.train.batch_size)
    ends = []
    for copy in (1, 2):
        snapshot.restore_weights(model)
        snapshot.restore_optimizer(model)
        experiment_support.train(model, data, snapshot.step, total, batch_size, 1000 * seed + copy)
        ends.append(stability.model_values(model))
    return ends


def _measure(model, data, config, ends, masks) -> dict:
    datasets = {"train": data.eval_batches("train"), "test": data.eval_batches("test")}
    bn_data = datasets["train"] if config.instability.recompute_batch_statistics else None
    path = stability.linear_path(
        model, ends[0], ends[1], datasets, int(config.instability.points), batch_statistics_data=bn_data
    )
    kernels = []
    for values in ends:
        stability.set_model_values(model, values)
        kernels.append(experiment_support.pruned_values(model))
    return {
        "path": path,
        "barrier_train": stability.error_barrier(path["train"]),
        "barrier_test": stability.error_barrier(path["test"]),
        "end_test_error": 0.5 * (path["test"][0] + path["test"][-1]),
        "l2_distance": stability.l2_distance(kernels[0], kernels[1], masks),
        "kernels_a": kernels[0],
    }


def run_replicate(config, data, replicate: int, log=print) -> list[dict]:
    """Every rewind point of one replicate (seed `config.seed + replicate`)."""
    seed = int(config.seed) + replicate
    batch_size = int(config.train.batch_size)
    steps_per_epoch = data.steps_per_epoch(batch_size)
    total = experiment_support.steps(config.train.training_steps, steps_per_epoch)
    points = sorted(
        {
            experiment_support.steps(p.strip(), steps_per_epoch)
            for p in config.instability.rewind_points.split(",")
            if p.strip()
        }
    )
    if not points or points[-1] >= total:
        raise ValueError(
            "Invalid value for `config.instability.rewind_points`: expected points before the end of "
            f"training (step {total}). Received: {config.instability.rewind_points!r}."
        )
    model = experiment_support.build(config, data, seed)
    snapshots, position = {}, 0
    for k in points:
        experiment_support.train(model, data, position, k, batch_size, seed)
        snapshots[k], position = Snapshot.capture(model, k), k
    experiment_support.train(model, data, position, total, batch_size, seed)
    trained = stability.model_values(model)
    rows = []
    for k in points:
        began, first = time.time(), len(rows)
        dense = _measure(model, data, config, _copies(model, data, config, snapshots[k], seed, total), None)
        rows.append({"replicate": replicate, "rewind_step": k, "network": "dense", "sparsity": 0.0, **dense})
        if int(config.run.levels) > 0:
            imp_masks = experiment_support.imp(
                model, data, config, snapshots[k], trained, int(config.run.levels), seed
            )
            # The random-pruning control: each layer's IMP mask shuffled (same layer-wise sparsity).
            shuffled = [
                np.random.default_rng([seed, k, i]).permutation(m.ravel()).reshape(m.shape)
                for i, m in enumerate(imp_masks)
            ]
            for network, masks in (("imp", imp_masks), ("random", shuffled)):
                experiment_support.set_masks(model, masks)
                sparse = _measure(
                    model, data, config, _copies(model, data, config, snapshots[k], seed, total), masks
                )
                rows.append(
                    {
                        "replicate": replicate,
                        "rewind_step": k,
                        "network": network,
                        "sparsity": 1.0 - sum(int(m.sum()) for m in masks) / sum(m.size for m in masks),
                        "pruning_l2_distance": stability.l2_distance(
                            sparse["kernels_a"], dense["kernels_a"], masks
                        ),
                        **sparse,
                    }
                )
            experiment_support.set_masks(model, [np.ones(m.shape, bool) for m in imp_masks])
        for row in rows[first:]:
            log(
                f"[instability] replicate {replicate} k={k} {row['network']:>6} "
                f"({row['sparsity']:.1%} sparse): barrier train {row['barrier_train']:.4f} "
                f"test {row['barrier_test']:.4f}, L2 {row['l2_distance']:.3f}  ({time.time() - began:.0f} s)"
            )
    for row in rows:
        del row["kernels_a"]
    return rows


_NETWORKS = ("dense", "imp", "random")


def _ordered_keys(rows: list[dict]) -> list[tuple]:
    keys = {(r["network"], r["rewind_step"]) for r in rows}
    return sorted(keys, key=lambda key: (_NETWORKS.index(key[0]) if key[0] in _NETWORKS else 99, key[1]))


def table(rows: list[dict]) -> str:
    """Mean (min..max over replicates) of the barriers and distances per network and rewind point."""
    lines = [
        f"{'network':>8} {'k':>6} {'sparsity':>8} {'barrier train':>22} {'barrier test':>22} "
        f"{'test error':>10} {'L2 (data order)':>16} {'L2 (pruning)':>13}"
    ]
    for network, k in _ordered_keys(rows):
        group = [r for r in rows if r["network"] == network and r["rewind_step"] == k]
        s = {
            key: experiment_support.summary([r[key] for r in group])
            for key in ("barrier_train", "barrier_test", "end_test_error", "l2_distance", "sparsity")
        }
        pruning = (
            f"{experiment_support.summary([r['pruning_l2_distance'] for r in group])['mean']:13.3f}"
            if "pruning_l2_distance" in group[0]
            else f"{'':>13}"
        )
        lines.append(
            f"{network:>8} {k:>6d} {s['sparsity']['mean']:8.1%} "
            f"{s['barrier_train']['mean']:8.4f} ({s['barrier_train']['min']:.4f}..{s['barrier_train']['max']:.4f}) "
            f"{s['barrier_test']['mean']:8.4f} ({s['barrier_test']['min']:.4f}..{s['barrier_test']['max']:.4f}) "
            f"{s['end_test_error']['mean']:10.4f} {s['l2_distance']['mean']:16.3f} {pruning}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str = "") -> str:
    """Error along the linear path (mean over replicates), train and test panels, one line per (network, k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120, sharey=False)
    for network, k in _ordered_keys(rows):
        group = [r for r in rows if r["network"] == network and r["rewind_step"] == k]
        alpha = group[0]["path"]["alpha"]
        label = f"{network} ({100 * group[0]['sparsity']:.0f}% sparse), k={k}"
        for axis, split in zip(axes, ("train", "test")):
            errors = 100.0 * np.mean([r["path"][split] for r in group], axis=0)
            axis.plot(
                alpha,
                errors,
                marker="o",
                markersize=2,
                linestyle={"dense": "-", "imp": "--"}.get(network, ":"),
                label=label,
            )
    for axis, split in zip(axes, ("train", "test")):
        axis.set_xlabel("Interpolation (0: copy A, 1: copy B)")
        axis.set_ylabel(f"{split.capitalize()} error (%)")
        axis.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_io.atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png")
    plt.close(figure)
    return path


def run_instability(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or reuses the finished replicates of) the instability experiment `config`.

    Writes `<workdir>/instability/<hash>/`: `replicate_<r>.json` per
    replicate, `results.json` (every row with its path), `instability.png`
    and `config.json`.

    Returns:
        `{"root", "rows", "table", "files", "elapsed_s"}`.
    """
    from tf_lottery.data.registry import load_dataset
    from tf_lottery.experiments.config_hash import config_hash

    _validate(config)
    began = time.time()
    root = os.path.join(workdir, "instability", config_hash(config))
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
    title = f"{config.model.name} on {config.dataset.name}: error along the linear path between two copies"
    if config.run.plots:
        files["plot"] = plot(rows, os.path.join(root, "instability.png"), title)
    text = table(rows)
    if config.run.verbose:
        log(text)
        log(f"Results: {root}")
    return {"root": root, "rows": rows, "table": text, "files": files, "elapsed_s": time.time() - began}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`defaults()`, or with `arg="smoke"` a run of seconds (for `--config=configs/instability_mnist1d.py` with `:smoke`)."""
    config = defaults()
    if arg == "smoke":
        config.train.training_steps = "3ep"
        config.run.levels = 2
        config.instability.rewind_points = "0it,40it"
        config.instability.points = 5
    elif arg:
        raise ValueError(f"Invalid config argument: expected 'smoke' or nothing. Received: {arg!r}.")
    return config


def _validate(config: ml_collections.ConfigDict) -> None:
    experiment_support.validate(config, "instability", group_defaults())


registry.register(
    registry.Kind(
        name="instability",
        run=run_instability,
        defaults=defaults,
        validate=_validate,
        summary="linear mode connectivity: error barriers between two copies trained from rewind points (Frankle et al. 2020)",
    )
)
