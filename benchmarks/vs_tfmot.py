"""tf_lottery next to tensorflow-model-optimization (tfmot), measured in one run.

Speed: the same LeNet-300-100 and a small conv net, same data, batch size and
optimizer, at 90% sparsity. tfmot's `prune_low_magnitude` runs under
`tf_keras` (Keras 2), as that library requires; tf_lottery under Keras 3. Each
is timed against its own dense baseline, epochs interleaved, medians
compared. Printed: tfmot / tf_keras dense, tf_lottery / Keras 3 dense, and
tf_lottery / tfmot.

Accuracy at 90% sparsity on MNIST-1D (Greydanus 2020; the real dataset that
is available offline, 40 inputs instead of MNIST's 784): the dense network,
tfmot's gradual magnitude schedule (polynomial 0 -> 90% over the first 70% of
training), tf_lottery's IMP ticket (global magnitude pruning, rewind to
initialisation, 10 prunings to exactly 90%) and tf_lottery's one-shot ticket
(train, prune 90% once, rewind, retrain). Every training run takes the same
number of steps; IMP spends 11 such runs in total, one-shot 2, tfmot 1.

    python benchmarks/vs_tfmot.py              # full (about 10 minutes on 2 cores)
    python benchmarks/vs_tfmot.py --quick      # a smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.data.mnist1d import load_mnist1d  # noqa: E402

SPARSITY = 0.9


# -- the same architectures in both Keras versions --------------------------------


def lenet(lib, inputs: int):
    init = lib.initializers.GlorotNormal(seed=0)
    return lib.Sequential(
        [
            lib.Input((inputs,)),
            lib.layers.Dense(300, activation="relu", kernel_initializer=init),
            lib.layers.Dense(100, activation="relu", kernel_initializer=init),
            lib.layers.Dense(10, kernel_initializer=init),
        ]
    )


def convnet(lib, length: int):
    init = lib.initializers.GlorotNormal(seed=0)
    return lib.Sequential(
        [
            lib.Input((length, 1)),
            lib.layers.Conv1D(32, 5, padding="same", activation="relu", kernel_initializer=init),
            lib.layers.MaxPooling1D(2),
            lib.layers.Conv1D(64, 5, padding="same", activation="relu", kernel_initializer=init),
            lib.layers.MaxPooling1D(2),
            lib.layers.Flatten(),
            lib.layers.Dense(128, activation="relu", kernel_initializer=init),
            lib.layers.Dense(10, kernel_initializer=init),
        ]
    )


def _compile(model, lib, lr=1.2e-3):
    model.compile(
        optimizer=lib.optimizers.Adam(lr),
        loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def tfmot_pruned(model, schedule):
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


# -- speed ---------------------------------------------------------------------


def _epoch(model, x, y, batch, callbacks=()):
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=list(callbacks))
    return time.perf_counter() - start


def speed(name, make, shape, samples, epochs, batch=60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, *shape)).astype("float32")
    y = rng.integers(0, 10, size=samples)
    runs = {
        "tf_keras dense": (_compile(make(tf_keras), tf_keras), ()),
        "tfmot pruned": (
            _compile(
                tfmot_pruned(
                    make(tf_keras), tfmot.sparsity.keras.ConstantSparsity(SPARSITY, 0, frequency=100)
                ),
                tf_keras,
            ),
            (tfmot.sparsity.keras.UpdatePruningStep(),),
        ),
        "keras3 dense": (_compile(make(keras), keras), ()),
    }
    masked = tfl.prunable(make(keras))
    tfl.prune(masked, target_sparsity=SPARSITY, scope="layer")
    runs["tf_lottery masked"] = (_compile(masked, keras), ())
    for model, callbacks in runs.values():
        _epoch(model, x, y, batch, callbacks)  # warm-up
    times = {key: [] for key in runs}
    for _ in range(epochs):
        for key, (model, callbacks) in runs.items():
            times[key].append(_epoch(model, x, y, batch, callbacks))
    med = {key: statistics.median(v) for key, v in times.items()}
    print(f"\n{name}: epoch time, {samples} samples, batch {batch}, median of {epochs} interleaved epochs")
    for key, value in med.items():
        print(f"  {key:<18} {value:7.3f} s")
    print(f"  tfmot / tf_keras dense        {med['tfmot pruned'] / med['tf_keras dense']:.3f}x")
    print(f"  tf_lottery / Keras 3 dense    {med['tf_lottery masked'] / med['keras3 dense']:.3f}x")
    print(f"  tf_lottery / tfmot (absolute) {med['tf_lottery masked'] / med['tfmot pruned']:.3f}x")
    return med


# -- accuracy at 90% sparsity -------------------------------------------------------


def _fit(model, data, epochs, callbacks=()):
    (x, y), (xv, yv) = data
    model.fit(
        x, y, validation_data=(xv, yv), batch_size=100, epochs=epochs, verbose=0, callbacks=list(callbacks)
    )


def _test_accuracy(model, x, y):
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _kernel_sparsity_tfkeras(model):
    kernels = [w.numpy() for w in model.weights if "kernel" in w.name]
    return 1.0 - sum(int(np.count_nonzero(k)) for k in kernels) / sum(k.size for k in kernels)


def accuracy(name, make, reshape, epochs, seed):
    (x, y), (xv, yv), (xt, yt) = load_mnist1d(validation=500)
    x, xv, xt = reshape(x), reshape(xv), reshape(xt)
    data = ((x, y), (xv, yv))
    steps = epochs * int(np.ceil(len(x) / 100))
    results = {}

    keras.utils.set_random_seed(seed)
    dense = _compile(make(keras), keras)
    _fit(dense, data, epochs)
    results["dense"] = (_test_accuracy(dense, xt, yt), 0.0)

    tf_keras.utils.set_random_seed(seed)
    # tfmot updates masks only at multiples of `frequency` up to `end_step`; make
    # `end_step` such a multiple so the schedule really ends at 90%.
    frequency = max(1, min(50, int(0.7 * steps) // 10))
    end_step = (int(0.7 * steps) // frequency) * frequency
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        0.0, SPARSITY, begin_step=0, end_step=end_step, frequency=frequency
    )
    gradual = _compile(tfmot_pruned(make(tf_keras), schedule), tf_keras)
    _fit(gradual, data, epochs, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(gradual)
    results["tfmot gradual"] = (_test_accuracy(stripped, xt, yt), _kernel_sparsity_tfkeras(stripped))

    keras.utils.set_random_seed(seed)
    imp = _compile(tfl.prunable(make(keras)), keras)
    lottery = tfl.LotteryCallback(rounds=11, target_sparsity=SPARSITY, rewind_to="0it", verbose=0)
    _fit(imp, data, 11 * epochs, [lottery])
    results["tf_lottery IMP"] = (_test_accuracy(imp, xt, yt), tfl.sparsity_report(imp).sparsity)

    keras.utils.set_random_seed(seed)
    oneshot = _compile(tfl.prunable(make(keras)), keras)
    lottery = tfl.LotteryCallback(rounds=2, target_sparsity=SPARSITY, rewind_to="0it", verbose=0)
    _fit(oneshot, data, 2 * epochs, [lottery])
    results["tf_lottery one-shot"] = (_test_accuracy(oneshot, xt, yt), tfl.sparsity_report(oneshot).sparsity)

    print(f"\n{name} on MNIST-1D, seed {seed}, {steps} steps per training run: test accuracy")
    for key, (acc, sparsity) in results.items():
        print(f"  {key:<22} {acc:6.3f}   (sparsity {sparsity:.3f})")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--timing-epochs", type=int, default=5)
    parser.add_argument("--train-epochs", type=int, default=30, help="epochs per training run (MNIST-1D)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    timing_epochs = 2 if args.quick else args.timing_epochs
    train_epochs = 2 if args.quick else args.train_epochs
    samples = 2400 if args.quick else 12000

    speed("LeNet-300-100 (784 inputs)", lambda lib: lenet(lib, 784), (784,), samples, timing_epochs)
    speed("Conv1D net (length 40)", lambda lib: convnet(lib, 40), (40, 1), samples, timing_epochs)
    for seed in args.seeds:
        accuracy("LeNet-300-100 (40 inputs)", lambda lib: lenet(lib, 40), lambda a: a, train_epochs, seed)
        accuracy("Conv1D net", lambda lib: convnet(lib, 40), lambda a: a[..., None], train_epochs, seed)


if __name__ == "__main__":
    main()
