"""The `instability` experiment: linear mode connectivity at rewind points.

For every rewind point `k` (Frankle et al. 2020, "Linear Mode Connectivity
and the Lottery Ticket Hypothesis"):

1. A parent run trains the dense network from initialization to the end of
   training with data order `seed`, keeping a snapshot (weights and
   optimizer) at each `k`: level 0 of the level loop
   (`tf_lottery.experiments.level_loop`), whose lines are one IMP per `k`.
2. Dense instability: from the snapshot at `k`, two copies train to the end
   with two other data orders; the error along the straight line between
   them is evaluated at `points` points (30 in the paper) on the training
   and test sets, giving the error barrier (max on the path minus the mean
   of the end points) and the L2 distance between the copies.
3. Sparse instability (`run.levels > 0`): IMP with rewinding to `k`
   (`run.levels` levels at `pruning.rate`; the line `rewind_<k>` of the
   level loop, every level trained) finds a subnetwork (the masks of its
   last level); two copies of it train from `k` and are compared the same
   way. So is the
   random-pruning control: each layer's IMP mask shuffled (the same
   layer-wise sparsity), from the same weights at `k`.
4. Stability to pruning (Frankle et al. 2019, "Stabilizing the LTH"): the L2
   distance, on the subnetwork's weights, between the subnetwork trained
   alone and the dense network trained from the same point with the same
   data order (copy A of each), for the IMP and the random subnetwork.

Errors are measured, like the papers, as top-1 classification error; the L2
distances are over the pruned weights (kernels) present in the subnetwork.

Everything lives in the run store (`run_store.py`): the lines' levels as for
`lottery` (the first rewind point's line in `replicate_<r>/round_<l>`, the
others in `replicate_<r>/branch_rewind_<k>/round_<l>`), and per replicate and
rewind point the copies (`instability_rewind_<k>/dense_<c>/`,
`.../round_<L>/{imp,random}_<c>/`, trained and resumed by the trainer) and
the analysis, `instability_rewind_<k>/round_<L>/instability.json` (written
once; a rerun reads it back). `results/instability.json` and
`results/instability.png` are built from every finished analysis.

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

import os
import time

import keras
import ml_collections
import numpy as np

from tf_lottery.core.walk import dense_masks, prune_wrappers, set_masks
from tf_lottery.experiments import registry, run_store, support
from tf_lottery.experiments.level_context import LevelContext
from tf_lottery.experiments.level_loop import Line, read_analysis, read_or_compute
from tf_lottery.experiments.runner import run_levels
from tf_lottery.lottery import stability
from tf_lottery.lottery.rewind import RewindPoint, reset_for_retrain
from tf_lottery.utils import atomic_io


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
    config.run.branches = ""
    config.run.steps_per_execution = 20
    config.instability = group_defaults()
    return config


def rewind_points(group: ml_collections.ConfigDict) -> list[str]:
    """The distinct points of `group.rewind_points` (`config.instability`), as written ('200it', '2ep')."""
    points = []
    for item in str(group.rewind_points).split(","):
        if not item.strip():
            continue
        try:
            point = str(RewindPoint.parse(item))
        except ValueError:
            raise ValueError(
                "Invalid value for `config.instability.rewind_points`: expected comma-separated "
                f"'<N>it' or '<N>ep' points, e.g. '0it,200it'. Received: {group.rewind_points!r}."
            ) from None
        if point not in points:
            points.append(point)
    if not points:
        raise ValueError(
            "Invalid value for `config.instability.rewind_points`: expected at least one point. "
            f"Received: {group.rewind_points!r}."
        )
    return points


def lines(points: list[str]) -> tuple[Line, ...]:
    """One IMP line per rewind point of `points` (`rewind_points`), restarting there; the first is the main line."""
    return tuple(Line(f"rewind_{point}", restart=point) for point in points)


def _kernels(model) -> list[np.ndarray]:
    """Values of the pruned weights (kernels), in mask order."""
    return [
        np.array(keras.ops.convert_to_numpy(w.value), copy=True)
        for wrapper in prune_wrappers(model)
        for w in wrapper.pruned_weights
    ]


def _copies(context: LevelContext, masks: list, snapshot, prefix: str) -> list:
    """Two copies with `masks` trained from `snapshot` with data orders `1000 * seed + {1, 2}`."""
    ends = []
    for copy in (1, 2):
        set_masks(context.model, masks)
        reset_for_retrain(context.model, "rewind", snapshot)
        context.train_from(f"{prefix}_{copy}", snapshot.step, 1000 * context.seed + copy)
        ends.append(stability.model_values(context.model))
    return ends


def _measure(context: LevelContext, group: ml_collections.ConfigDict, ends, masks) -> dict:
    data, model = context.data, context.model
    datasets = {"train": data.eval_batches("train"), "test": data.eval_batches("test")}
    bn_data = datasets["train"] if group.recompute_batch_statistics else None
    path = stability.linear_path(
        model, ends[0], ends[1], datasets, int(group.points), batch_statistics_data=bn_data
    )
    kernels = []
    for values in ends:
        stability.set_model_values(model, values)
        kernels.append(_kernels(model))
    return {
        "path": path,
        "barrier_train": stability.error_barrier(path["train"]),
        "barrier_test": stability.error_barrier(path["test"]),
        "end_test_error": 0.5 * (path["test"][0] + path["test"][-1]),
        "l2_distance": stability.l2_distance(kernels[0], kernels[1], masks),
        "kernels_a": kernels[0],
    }


def analysis_dir(store, replicate: int, line: Line) -> str:
    return os.path.join(store.replicate_dir(replicate), f"instability_{line.name}")


def analysis_path(store, replicate: int, line: Line, levels: int) -> str:
    """Where the rows of `line`'s rewind point with IMP to `levels` are stored."""
    return os.path.join(analysis_dir(store, replicate, line), f"round_{levels}", "instability.json")


def _analyse(context: LevelContext, group: ml_collections.ConfigDict, line: Line, levels: int, log) -> dict:
    """The rows of one rewind point: dense, IMP (the line's level `levels`) and random copies."""
    began = time.time()
    k = context.restart_step(line)
    snapshot = context.restart_point(line)
    directory = analysis_dir(context.store, context.replicate, line)
    seed, model = context.seed, context.model
    dense = _measure(
        context,
        group,
        _copies(context, dense_masks(model), snapshot, os.path.join(directory, "dense")),
        None,
    )
    rows = [{"replicate": context.replicate, "rewind_step": k, "network": "dense", "sparsity": 0.0, **dense}]
    if levels > 0:
        imp_masks = context.level_masks(levels, None if line == context.main else line.name)
        # The random-pruning control: each layer's IMP mask shuffled (same layer-wise sparsity).
        shuffled = [
            np.random.default_rng([seed, k, i]).permutation(m.ravel()).reshape(m.shape)
            for i, m in enumerate(imp_masks)
        ]
        for network, masks in (("imp", imp_masks), ("random", shuffled)):
            prefix = os.path.join(directory, f"round_{levels}", network)
            sparse = _measure(context, group, _copies(context, masks, snapshot, prefix), masks)
            rows.append(
                {
                    "replicate": context.replicate,
                    "rewind_step": k,
                    "network": network,
                    "sparsity": 1.0 - sum(int(m.sum()) for m in masks) / sum(m.size for m in masks),
                    "pruning_l2_distance": stability.l2_distance(
                        sparse["kernels_a"], dense["kernels_a"], masks
                    ),
                    **sparse,
                }
            )
    for row in rows:
        del row["kernels_a"]
        log(
            f"[instability] replicate {context.replicate} k={k} {row['network']:>6} "
            f"({row['sparsity']:.1%} sparse): barrier train {row['barrier_train']:.4f} "
            f"test {row['barrier_test']:.4f}, L2 {row['l2_distance']:.3f}  ({time.time() - began:.0f} s)"
        )
    return {"rows": rows, "elapsed_s": time.time() - began}


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
            key: support.summary([r[key] for r in group])
            for key in ("barrier_train", "barrier_test", "end_test_error", "l2_distance", "sparsity")
        }
        pruning = (
            f"{support.summary([r['pruning_l2_distance'] for r in group])['mean']:13.3f}"
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


class _Analysis:
    """What the kind measures on a replicate's finished lines; the level loop runs it after the levels.

    Args:
        group: ConfigDict. The run's `config.instability` group.
        lines: The lines (one per rewind point), the main line first.
        levels: int. The IMP level whose masks the sparse copies take
            (`config.run.levels`).
        log: Callable taking a str.
    """

    def __init__(self, group: ml_collections.ConfigDict, lines: tuple, levels: int, log):
        self.group, self.lines, self.levels, self.log = group, lines, levels, log

    def __call__(self, store, index: int, context) -> None:
        """Runs the analyses of replicate `index` that are not stored yet (`context()` builds it)."""
        for line in self.lines:
            read_or_compute(
                analysis_path(store, index, line, self.levels),
                lambda line=line: _analyse(context(), self.group, line, self.levels, self.log),
            )


def collect(store, lines: tuple[Line, ...], levels: int, replicates: int) -> list[dict]:
    """Every row of the finished analyses in `store` (IMP to `levels`), by replicate, rewind point and network."""
    rows = []
    for replicate in range(replicates):
        for line in lines:
            path = analysis_path(store, replicate, line, levels)
            if atomic_io.exists(path):
                rows.extend(read_analysis(path)["rows"])
    order = {network: i for i, network in enumerate(_NETWORKS)}
    return sorted(rows, key=lambda r: (r["replicate"], r["rewind_step"], order.get(r["network"], 99)))


def run_instability(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) the instability experiment `config` under `workdir`.

    The lines (one IMP per rewind point) run through the level loop
    (`runner.run_levels`); then each selected replicate's analysis of
    each rewind point runs unless it is stored. Writes, besides the level
    loop's files, `results/instability.json` (every finished row with its
    path) and `results/instability.png` under `<workdir>/instability/<hash>/`.

    Returns:
        `{"root", "hash", "rows", "table", "files", "levels", "elapsed_s"}`;
        `levels` is what `run_levels` returned for the lines.
    """
    _validate(config)
    began = time.time()
    points = rewind_points(config.instability)
    every_line = lines(points)
    run, pruning, setup = config.run, config.pruning, f"{config.model.name} on {config.dataset.name}"
    levels = int(run.levels)
    analysis = _Analysis(config.instability, every_line, levels, log)
    heading = (
        f"instability of {setup}: IMP ({pruning.scope} {pruning.rate:.0%}/round) "
        f"rewinding to each of {', '.join(points)}"
    )
    imp = run_levels(
        config, workdir, log, main=every_line[0], arms=every_line[1:], title=heading, analysis=analysis
    )
    store = run_store.RunStore(workdir, config)
    rows = collect(store, every_line, levels, int(run.replicates))
    title = f"{setup}: error along the linear path between two copies"
    summary = support.finish(
        store, "instability", rows, table(rows), bool(run.verbose), log, began, levels=imp
    )
    if run.plots and rows:
        summary["files"]["plot"] = plot(rows, os.path.join(store.results_dir, "instability.png"), title)
    return summary


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
    support.validate(config, "instability", group_defaults(), controls="its random subnetworks")
    rewind_points(config.instability)


registry.register(
    registry.Kind(
        name="instability",
        run=run_instability,
        defaults=defaults,
        validate=_validate,
        summary="linear mode connectivity: error barriers between two copies trained from rewind points (Frankle et al. 2020)",
    )
)
