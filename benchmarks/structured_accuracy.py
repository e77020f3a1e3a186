"""What a user gives up for speed: block (1x4) and channel tickets beside unstructured ones.

MNIST-1D (generated offline), two networks, three seeds, every ticket found
two ways, all through the public `fit()` API:

- `imp`: `tfl.LotteryCallback`, global IMP rewinding to initialisation
  (Frankle & Carbin 2019), `--rounds` trainings of `--epochs` epochs.
- `reinit`: Frankle & Carbin's control: the `imp` ticket's masks with fresh
  random weights. For channels this is Liu et al. (2019)'s "training the
  pruned architecture from scratch".
- `gradual`: `tfl.GradualPruning` (Zhu & Gupta 2017), polynomial schedule
  over the first two thirds of one training of `--rounds * --epochs` epochs
  (the same number of epochs IMP spends in total).

Structures: unstructured, `"1x4"` blocks (TFLite's block-sparse kernel) and
`"channels"` (whole units and filters, which `tfl.shrink` removes). For
unstructured and 1x4 the target is the fraction of weights pruned; for
channels it is the fraction of units, and the table gives the weight
sparsity that results (a unit takes its input and output weights with it).

Networks: the MLP 40-256-256-10 and a Conv1D net (32-32-64 filters of
width 5, max pooling, a dense head). The first convolution (one input
channel) is left dense for every structure, since 1x4 blocks need inputs in
fours; the output layer's units are never removed.

    python benchmarks/structured_accuracy.py                 # the full table (3 seeds)
    python benchmarks/structured_accuracy.py --quick         # a smoke run

The table prints test accuracy (%) at the end of training, mean ± std over
the seeds, and the weight sparsity reached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.datasets import mnist1d  # noqa: E402

STRUCTURES = {"unstructured": None, "1x4": "1x4", "channels": "channels"}
METHODS = ("imp", "reinit", "gradual")


def make_model(kind: str, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    if kind == "mlp":
        layers = [
            keras.Input((40,)),
            keras.layers.Dense(256, activation="relu", name="fc1"),
            keras.layers.Dense(256, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="output"),
        ]
    else:
        layers = [
            keras.Input((40, 1)),
            keras.layers.Conv1D(32, 5, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv1D(32, 5, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling1D(2),
            keras.layers.Conv1D(64, 5, padding="same", activation="relu", name="conv3"),
            keras.layers.MaxPooling1D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu", name="fc"),
            keras.layers.Dense(10, name="output"),
        ]
    model = keras.Sequential(layers)
    return tfl.prunable(model, exclude=["conv1"] if kind == "conv" else None)


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def weight_sparsity(model) -> float:
    masks = tfl.get_masks(model)
    return 1.0 - sum(int(m.sum()) for m in masks) / sum(m.size for m in masks)


def run(kind, structure, method, seed, data, args, ticket_masks=None):
    (x, y), (x_val, y_val), (x_test, y_test) = data
    model = make_model(kind, seed)
    _compile(model)
    epochs = args.rounds * args.epochs
    target = args.channel_target if structure == "channels" else args.target
    fit = dict(batch_size=100, epochs=epochs, validation_data=(x_val, y_val), verbose=0)
    # Layer by layer for every structure: a global ranking of unit norms favours layers with
    # more inputs. The output layer at half the rate, as Frankle & Carbin prune it (its units
    # are never removed under channels, which only thin its inputs with the units before it).
    pruning = dict(scope="layer", structure=structure)
    if structure != "channels":
        pruning["layer_rates"] = {"output": target / 2}
    if method == "gradual":
        steps = epochs * int(np.ceil(len(x) / 100))
        schedule = tfl.PolynomialDecay(
            0.0, target, begin_step=0, end_step=(2 * steps // 3) // 10 * 10, frequency=10
        )
        model.fit(x, y, callbacks=[tfl.GradualPruning(schedule, **pruning)], **fit)
        callback = None
    else:
        callback = tfl.LotteryCallback(
            rounds=args.rounds,
            target_sparsity=target,
            rewind_to="0it",
            retrain="reinit" if method == "reinit" else "rewind",
            ticket_masks=ticket_masks,
            seed=seed,
            **pruning,
            verbose=0,
        )
        model.fit(x, y, callbacks=[callback], **fit)
    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    return accuracy, weight_sparsity(model), callback


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "conv"], choices=["mlp", "conv"])
    parser.add_argument("--structures", nargs="+", default=list(STRUCTURES), choices=list(STRUCTURES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=4, help="IMP trainings (the first is dense)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per IMP training")
    parser.add_argument("--target", type=float, default=0.75, help="weights pruned (unstructured, 1x4)")
    parser.add_argument("--channel-target", type=float, default=0.5, help="units pruned (channels)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 rounds of 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rounds, args.epochs = args.seeds[:1], 2, 2
    data = mnist1d()
    results = {}
    began = time.time()
    for kind in args.models:
        for seed in args.seeds:  # the dense network, trained as long as one IMP round
            (x, y), (x_val, y_val), (x_test, y_test) = data
            model = make_model(kind, seed)
            _compile(model)
            model.fit(x, y, batch_size=100, epochs=args.epochs, validation_data=(x_val, y_val), verbose=0)
            accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
            results.setdefault((kind, "dense", "-"), []).append((accuracy, 0.0))
            print(f"  {kind} dense seed {seed}: test accuracy {100 * accuracy:.2f}%", flush=True)
        for label in args.structures:
            structure = STRUCTURES[label]
            for seed in args.seeds:
                ticket = None
                for method in args.methods:
                    masks = ticket.round_masks if (method == "reinit" and ticket is not None) else None
                    if method == "reinit" and masks is None:
                        continue  # the control needs this seed's IMP ticket
                    accuracy, sparsity, callback = run(kind, structure, method, seed, data, args, masks)
                    if method == "imp":
                        ticket = callback
                    results.setdefault((kind, label, method), []).append((accuracy, sparsity))
                    print(
                        f"  {kind} {label} {method} seed {seed}: test accuracy {100 * accuracy:.2f}%, "
                        f"weight sparsity {100 * sparsity:.1f}%  ({time.time() - began:.0f} s)",
                        flush=True,
                    )
    print(
        f"\nTest accuracy (%) at the end of training, mean ± std over {len(args.seeds)} seed(s); "
        f"IMP {args.rounds} x {args.epochs} epochs, gradual {args.rounds * args.epochs} epochs"
    )
    print("| model | structure | method | weight sparsity | test accuracy |")
    print("|---|---|---|---|---|")
    for (kind, label, method), values in results.items():
        accuracies = [100 * a for a, _ in values]
        spread = f" ± {statistics.stdev(accuracies):.2f}" if len(accuracies) > 1 else ""
        sparsity = 100 * statistics.mean(s for _, s in values)
        print(
            f"| {kind} | {label} | {method} | {sparsity:.1f}% | {statistics.mean(accuracies):.2f}{spread} |"
        )


if __name__ == "__main__":
    main()
