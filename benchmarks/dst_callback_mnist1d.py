"""RigL and SET through the `DynamicSparseTraining` callback in `fit()`, vs static and the IMP ticket, MNIST-1D.

The library-level comparison of issue #6 (docs/RESULTS.md, "Dynamic sparse
training at 90% sparsity"); RigL's gradient is taken on a random training
batch (`--gradient drawn_batch`, the default here), as it was then;
`--gradient train_batch` takes the update step's own batch. The same comparison through
the experiment runner, at 80/90/95%, is `benchmarks/sparse_training_mnist1d.py`.

Every sparse network has 90% of its weights pruned and trains the same
number of steps (60 epochs of 40 steps, Adam 1e-3, batch 100) from the same
initialization (per seed); the methods differ only in how the mask is
chosen:

- `static_<dist>`: a random mask with the `<dist>` layer sparsities, fixed.
- `rigl_<dist>` / `set_<dist>`: the same initial mask, rewired every 100
  steps until 75% of training (drop fraction 0.3, cosine decay).
- `imp`: the winning ticket of global IMP (10 levels of 20.6%, the last one
  pruning to exactly 90%, rewinding to initialization); its final level
  trains the same 2,400 steps (the 10 earlier levels are the cost of
  finding it).
- `dense`: the unpruned network, for reference.

    python benchmarks/dst_callback_mnist1d.py --methods rigl_erk set_erk static_erk \
        rigl_uniform set_uniform static_uniform dense
    python benchmarks/dst_callback_mnist1d.py --methods imp
    python benchmarks/dst_callback_mnist1d.py --summarize

Each call appends one JSON per (method, seed) to `--out`.
"""

from __future__ import annotations

import argparse
import time

import sparse_common as common

import tf_lottery as tfl
from tf_lottery.pruning import distributions as sparsity_distributions
from tf_lottery.sparse_training.callback import DynamicSparseTraining

METHODS = [f"{kind}_{dist}" for dist in ("erk", "uniform") for kind in ("rigl", "set", "static")] + [
    "imp",
    "dense",
]


def run(method: str, seed: int, args, arrays) -> dict:
    x, y, x_test, y_test = arrays
    began = time.time()
    net = common.model(seed)
    record = {"method": method, "seed": seed, "epochs": args.epochs}
    if method == "imp":
        common.compile_model(net, args.steps_per_execution)
        levels = 10
        common.imp(net, x, y, args.epochs, seed, levels, last_target=args.sparsity)
    else:
        if method != "dense":
            kind, dist = method.split("_")
            sparsity_distributions.prune_to_distribution(net, args.sparsity, dist, seed=seed)
        common.compile_model(net, args.steps_per_execution)
        callbacks = []
        if method.startswith(("rigl", "set")):
            drawn = method.startswith("rigl") and args.gradient == "drawn_batch"
            callbacks.append(
                DynamicSparseTraining(
                    method.split("_")[0],
                    data=(x, y) if drawn else None,
                    gradient=args.gradient,
                    batch_size=common.BATCH_SIZE if drawn else None,
                    delta_t=args.delta_t,
                    t_end=0.75,
                    drop_fraction=0.3,
                    seed=seed,
                )
            )
        common.train(net, x, y, args.epochs, seed, callbacks)
        if callbacks:
            record["updates"] = len(callbacks[0].history)
            record["replaced"] = sum(r["grown"] for r in callbacks[0].history)
    report = tfl.sparsity_report(net)
    record.update(
        sparsity=report.sparsity,
        layer_sparsity={e.layer: e.sparsity for e in report.layers},
        test_accuracy=common.accuracy(net, x_test, y_test),
        train_accuracy=common.accuracy(net, x, y),
        wall_s=time.time() - began,
    )
    return record


def summarize(out: str) -> None:
    records = common.read_all(out)
    print(
        "| method | sparsity | test accuracy % (mean ± std, min-max) | train accuracy % | wall s per seed |"
    )
    print("|---|---|---|---|---|")
    for method in METHODS:
        group = [r for r in records if r["method"] == method]
        if not group:
            continue
        wall = sum(r["wall_s"] for r in group) / len(group)
        print(
            f"| {method} | {group[0]['sparsity']:.1%} | {common.describe([r['test_accuracy'] for r in group])} "
            f"| {common.describe([r['train_accuracy'] for r in group])} | {wall:.0f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=[], choices=METHODS)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--delta-t", type=int, default=100)
    # 'drawn_batch' (a random training batch of 100) is what docs/RESULTS.md measured.
    parser.add_argument("--gradient", default="drawn_batch", choices=("drawn_batch", "train_batch"))
    parser.add_argument("--steps-per-execution", type=int, default=20)
    parser.add_argument("--out", default="/tmp/tf_lottery_bench/sparse_training")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args()
    arrays = common.data()
    for method in args.methods:
        for seed in args.seeds:
            record = run(method, seed, args, arrays)
            common.write(args.out, f"{method}_seed{seed}", record)
            print(
                f"{method:>15} seed {seed}: {record['sparsity']:.2%} sparse, test accuracy "
                f"{record['test_accuracy']:.4f} (train {record['train_accuracy']:.4f})",
                flush=True,
            )
    if args.summarize or not args.methods:
        summarize(args.out)


if __name__ == "__main__":
    main()
