"""Pruning at initialization (SNIP, GraSP, SynFlow) vs random pruning vs IMP, MNIST-1D.

At the sparsities of global IMP levels 7, 10 and 14 (20% per level:
79.0%, 89.3%, 95.6%), each method prunes the MNIST-1D MLP at
initialization, then the subnetwork trains 40 epochs (Adam 1e-3, batch
100, 40 steps per execution) from that initialization; test accuracy at
the end.

- `snip`: |g * w| on 256 training examples, global (Lee et al. 2019).
- `grasp`: w * Hg (temperature 200) on 256 examples, global (Wang et al. 2020).
- `synflow`: 100 data-free rounds, exponential schedule, global (Tanaka et al. 2020).
- `magnitude`: |w| at initialization, global.
- `random`: uniformly at random, every layer at the same sparsity.
- `random_erk`: uniformly at random within each layer, ERK layer sparsities.
- `imp`: global IMP rewinding to initialization; its level 7, 10 and 14
  networks (each level trains the same 40 epochs).
- `dense`: the unpruned network.

    python benchmarks/pai_mnist1d.py --methods snip grasp synflow
    python benchmarks/pai_mnist1d.py --methods magnitude random random_erk dense
    python benchmarks/pai_mnist1d.py --methods imp
    python benchmarks/pai_mnist1d.py --summarize

Expected (Frankle et al. 2021, arXiv:2009.08576): every PaI method beats
random pruning and falls short of IMP.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sparse_common as common

import tf_lottery as tfl
from tf_lottery.pruning import distributions as sparsity_distributions
from tf_lottery.pruning.scorers.grasp import GraSPScorer
from tf_lottery.pruning.scorers.snip import SNIPScorer
from tf_lottery.pruning.scorers.synflow import synflow_prune

METHODS = ["snip", "grasp", "synflow", "magnitude", "random", "random_erk", "imp", "dense"]
LEVELS = (7, 10, 14)


def prune_at_init(method: str, net, sparsity: float, seed: int, x, y) -> float:
    """Prunes `net` (at initialization) by `method`; returns the seconds it took."""
    rows = np.random.default_rng(seed).choice(len(x), 256, replace=False)
    began = time.time()
    if method == "snip":
        tfl.prune(net, target_sparsity=sparsity, scorer=SNIPScorer(net, x[rows], y[rows]))
    elif method == "grasp":
        tfl.prune(net, target_sparsity=sparsity, scorer=GraSPScorer(net, x[rows], y[rows]))
    elif method == "synflow":
        synflow_prune(net, sparsity, iterations=100)
    elif method == "magnitude":
        tfl.prune(net, target_sparsity=sparsity)
    elif method == "random":
        tfl.prune(net, target_sparsity=sparsity, scope="layer", scorer=tfl.scoring.RandomScorer(seed))
    elif method == "random_erk":
        sparsity_distributions.prune_to_distribution(net, sparsity, "erk", seed=seed)
    else:
        raise ValueError(f"Unknown method {method!r}.")
    return time.time() - began


def _record(method, seed, level, net, arrays, began, **extra) -> dict:
    x, y, x_test, y_test = arrays
    report = tfl.sparsity_report(net)
    return {
        "method": method,
        "seed": seed,
        "level": level,
        "sparsity": report.sparsity,
        "layer_sparsity": {e.layer: e.sparsity for e in report.layers},
        "test_accuracy": common.accuracy(net, x_test, y_test),
        "train_accuracy": common.accuracy(net, x, y),
        "wall_s": time.time() - began,
        **extra,
    }


def run(method: str, seed: int, args, arrays, out: str) -> None:
    x, y, _, _ = arrays
    if method == "imp":
        net = common.compile_model(common.model(seed), args.steps_per_execution)
        began = [time.time()]

        def on_level(level, trained):
            if level in LEVELS:
                record = _record("imp", seed, level, trained, arrays, began[0])
                common.write(out, f"imp_level{level}_seed{seed}", record)
                print(
                    f"imp level {level} seed {seed}: {record['sparsity']:.2%} {record['test_accuracy']:.4f}",
                    flush=True,
                )
            began[0] = time.time()

        common.imp(net, x, y, args.epochs, seed, max(LEVELS), on_level=on_level)
        return
    levels = (0,) if method == "dense" else LEVELS
    for level in levels:
        began = time.time()
        net = common.model(seed)
        common.compile_model(net, args.steps_per_execution)
        prune_s = 0.0 if method == "dense" else prune_at_init(method, net, 1 - 0.8**level, seed, x, y)
        common.train(net, x, y, args.epochs, seed)
        record = _record(method, seed, level, net, arrays, began, prune_s=prune_s)
        common.write(out, f"{method}_level{level}_seed{seed}", record)
        print(
            f"{method:>10} level {level:>2} seed {seed}: {record['sparsity']:.2%} sparse, test accuracy "
            f"{record['test_accuracy']:.4f} (pruning {prune_s:.1f} s)",
            flush=True,
        )


def summarize(out: str) -> None:
    records = common.read_all(out)
    levels = sorted({r["level"] for r in records})
    header = " | ".join(
        f"{next(r['sparsity'] for r in records if r['level'] == lv):.1%} sparse" for lv in levels
    )
    print(f"| method | {header} |")
    print("|---" * (len(levels) + 1) + "|")
    for method in METHODS:
        cells = []
        for level in levels:
            group = [r for r in records if r["method"] == method and r["level"] == level]
            cells.append(common.describe([r["test_accuracy"] for r in group]) if group else "")
        if any(cells):
            print(f"| {method} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=[], choices=METHODS)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps-per-execution", type=int, default=40)
    parser.add_argument("--out", default="/tmp/tf_lottery_bench/pai")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args()
    arrays = common.data()
    for method in args.methods:
        for seed in args.seeds:
            run(method, seed, args, arrays, args.out)
    if args.summarize or not args.methods:
        summarize(args.out)


if __name__ == "__main__":
    main()
