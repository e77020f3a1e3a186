"""A short demo of `LotteryCallback` on MNIST-1D, offline (about a minute).

    python examples/lottery_callback_demo.py

Trains an MLP with iterative magnitude pruning inside one `model.fit` (5
rounds, 20% of the surviving weights per round, output layer at half rate,
rewinding to initialisation), then strips the ticket to a plain Keras model
and prints the rounds and the final sparsity report.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.datasets import mnist1d  # noqa: E402


def make_mlp() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, name="output"),
        ]
    )


def main(rounds: int = 5, epochs_per_round: int = 15) -> None:
    keras.utils.set_random_seed(0)
    (x, y), (x_val, y_val), (x_test, y_test) = mnist1d(validation=500)
    model = tfl.prunable(make_mlp())
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    lottery = tfl.LotteryCallback(
        rounds=rounds, pruning_rate=0.2, layer_rates={"output": 0.1}, rewind_to="0it"
    )
    model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        batch_size=100,
        epochs=rounds * epochs_per_round,
        callbacks=[lottery],
        verbose=0,
    )
    print(f"\n{'round':>5} {'% remaining':>12} {'val acc':>8} {'early-stop step':>16}")
    for record in lottery.history:
        print(
            f"{record['round']:>5} {record['percent_remaining']:>12.1f} "
            f"{record['metrics']['val_accuracy']:>8.3f} {record['early_stop_step']:>16}"
        )
    plain = tfl.strip(model)
    plain.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    _, test_accuracy = plain.evaluate(x_test, y_test, verbose=0)
    print(f"\nLast round's network, stripped to plain Keras: test accuracy {test_accuracy:.3f}")
    print(tfl.sparsity_report(model))


if __name__ == "__main__":
    main()
