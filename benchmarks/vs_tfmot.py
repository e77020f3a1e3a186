"""tf_lottery next to tensorflow-model-optimization (tfmot), measured in one run.

Speed: the same LeNet-300-100 and a small conv net, same data, batch size and
optimizer, at 90% sparsity. tfmot's `prune_low_magnitude` runs under
`tf_keras` (Keras 2), as that library requires; tf_lottery under Keras 3. Each
is timed against its own dense baseline, epochs interleaved, medians
compared. Printed: tfmot / tf_keras dense, tf_lottery / Keras 3 dense, and
tf_lottery / tfmot, for fixed 90% masks and for gradual pruning in progress
(both libraries on the same `PolynomialDecay`, pruning every 100 steps).

Accuracy at 90% sparsity on MNIST-1D (Greydanus 2020; the real dataset that
is available offline, 40 inputs instead of MNIST's 784), per seed (initial
weights and data order): the dense network; gradual magnitude pruning
(Zhu & Gupta 2017) with one schedule, polynomial 0 -> 90% over the first 70%
of training, in tfmot (`prune_low_magnitude` + `UpdatePruningStep`) and in
tf_lottery (`tfl.GradualPruning`, layer-wise as tfmot prunes, and global);
optionally (`--methods ... imp oneshot`) tf_lottery's IMP ticket (global
magnitude pruning, rewind to initialisation, 10 prunings to exactly 90%) and
one-shot ticket (train, prune 90% once, rewind, retrain). Every training run
takes the same number of steps; IMP spends 11 such runs in total, one-shot
2, gradual pruning 1. The summary gives mean +- std over the seeds, the
accuracy gap tf_lottery gradual - tfmot gradual, and the ratio of their
epoch times in these runs.

    python benchmarks/vs_tfmot.py                        # speed + dense/tfmot/gradual, 3 seeds
    python benchmarks/vs_tfmot.py --skip-speed --methods dense tfmot gradual gradual_global imp oneshot
    python benchmarks/vs_tfmot.py --quick                # a smoke run (about a minute)
    python benchmarks/vs_tfmot.py --best-settings-only   # each library at its fastest setting

Last, each library is timed at each compile setting both Keras versions
document for speed (XLA, `steps_per_execution` of 20 and of 200, a whole
epoch, with and without XLA, and neither; the data as NumPy arrays or as a
batched, cached `tf.data.Dataset`), beside
its own dense baseline; the fastest setting at which the masks hold is its
best, and the last line is tf_lottery's best epoch over tfmot's best.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.core.walk import prune_wrappers  # noqa: E402
from tf_lottery.data.mnist1d import load_mnist1d  # noqa: E402

SPARSITY = 0.9


# -- the same architectures in both Keras versions --------------------------------


def lenet(lib, inputs: int, seed: int = 0):
    init = lib.initializers.GlorotNormal(seed=seed)
    return lib.Sequential(
        [
            lib.Input((inputs,)),
            lib.layers.Dense(300, activation="relu", kernel_initializer=init),
            lib.layers.Dense(100, activation="relu", kernel_initializer=init),
            lib.layers.Dense(10, kernel_initializer=init),
        ]
    )


def convnet(lib, length: int, seed: int = 0):
    init = lib.initializers.GlorotNormal(seed=seed)
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


def _compile(model, lib, lr=1.2e-3, **settings):
    model.compile(
        optimizer=lib.optimizers.Adam(lr),
        loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        **settings,
    )
    return model


def tfmot_pruned(model, schedule):
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


# -- speed ---------------------------------------------------------------------


def _epoch(model, x, y, batch, callbacks=()):
    """One epoch; `x` is an array (with labels `y`) or a batched `tf.data.Dataset` (`y` None)."""
    start = time.perf_counter()
    if y is None:
        model.fit(x, epochs=1, verbose=0, callbacks=list(callbacks))
    else:
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
    # Gradual pruning in progress: 0 -> 90% over the timed epochs, every 100 steps.
    total_steps = (epochs + 1) * int(np.ceil(samples / batch))
    end = max(100, int(0.7 * total_steps) // 100 * 100)
    runs["tfmot gradual"] = (
        _compile(
            tfmot_pruned(make(tf_keras), tfmot.sparsity.keras.PolynomialDecay(0.0, SPARSITY, 0, end)),
            tf_keras,
        ),
        (tfmot.sparsity.keras.UpdatePruningStep(),),
    )
    runs["tf_lottery gradual"] = (
        _compile(tfl.prunable(make(keras)), keras),
        (tfl.GradualPruning(tfl.PolynomialDecay(0.0, SPARSITY, 0, end), scope="layer"),),
    )
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
    print(f"  gradual: tfmot / tf_keras dense      {med['tfmot gradual'] / med['tf_keras dense']:.3f}x")
    print(f"  gradual: tf_lottery / Keras 3 dense  {med['tf_lottery gradual'] / med['keras3 dense']:.3f}x")
    print(f"  gradual: tf_lottery / tfmot          {med['tf_lottery gradual'] / med['tfmot gradual']:.3f}x")
    return med


# -- each library at its best settings ----------------------------------------------

# The compile settings both Keras versions document for speed: XLA (`jit_compile`) and several
# steps per call (`steps_per_execution`). Each library is timed at each, and its fastest setting
# whose epoch keeps the masks (at least 90% of the kernels zero afterwards) is its best.
SETTINGS = {
    "default": {},
    "jit": {"jit_compile": True},
    "spe20": {"steps_per_execution": 20},
    "jit+spe20": {"jit_compile": True, "steps_per_execution": 20},
    "spe200": {"steps_per_execution": 200},
    "jit+spe200": {"jit_compile": True, "steps_per_execution": 200},
}
# How the data reaches `fit`, the other setting both Keras versions document: NumPy arrays
# (which `fit` converts, slices and batches on every call) or a `tf.data.Dataset` batched and
# cached in memory once (the TensorFlow guide's "Better performance with the tf.data API"; the
# runner's own pipeline is one). Every library gets the same batches in the same order.
INPUTS = ("arrays", "dataset")


def _zero_fraction(kernels) -> float:
    values = [np.asarray(k) for k in kernels]
    return 1.0 - sum(int(np.count_nonzero(v)) for v in values) / sum(v.size for v in values)


def _tfmot_model(make, settings):
    model = tfmot_pruned(make(tf_keras), tfmot.sparsity.keras.ConstantSparsity(SPARSITY, 0, frequency=100))
    model = _compile(model, tf_keras, **settings)

    def sparsity():
        stripped = tfmot.sparsity.keras.strip_pruning(model)
        return _zero_fraction(w for w in stripped.weights if "kernel" in w.name)

    return model, (tfmot.sparsity.keras.UpdatePruningStep(),), sparsity


def _tf_lottery_model(make, settings):
    model = tfl.prunable(make(keras))
    tfl.prune(model, target_sparsity=SPARSITY, scope="layer")
    model = _compile(model, keras, **settings)
    return model, (), lambda: _zero_fraction(w.layer.kernel for w in prune_wrappers(model))


def _dense_model(lib):
    def build(make, settings):
        model = _compile(make(lib), lib, **settings)
        return model, (), lambda: 1.0  # nothing to hold

    return build


def best_settings(name, make, shape, samples, epochs, batch=60, settings=tuple(SETTINGS)):
    """Epoch time of each library at each of `settings` x `INPUTS`; returns tf_lottery best / tfmot best."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, *shape)).astype("float32")
    y = rng.integers(0, 10, size=samples)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(tf.data.AUTOTUNE)
    for _ in dataset:  # fills the cache
        pass
    data = {"arrays": (x, y), "dataset": (dataset, None)}
    runs = {}
    libraries = (
        ("tf_keras dense", _dense_model(tf_keras)),
        ("tfmot", _tfmot_model),
        ("keras3 dense", _dense_model(keras)),
        ("tf_lottery", _tf_lottery_model),
    )
    for library, build in libraries:
        for setting in settings:
            kwargs = SETTINGS[setting]
            for feed in INPUTS:
                try:
                    model, callbacks, sparsity = build(make, kwargs)
                    _epoch(model, *data[feed], batch, callbacks)  # warm-up (traces, compiles)
                except Exception as error:  # noqa: BLE001 - a setting the library cannot run is reported
                    print(f"  {library} {setting} {feed}: fails ({type(error).__name__}: {str(error)[:120]})")
                    continue
                runs[(library, setting, feed)] = (model, callbacks, sparsity)
    times = {key: [] for key in runs}
    for _ in range(epochs):
        for key, (model, callbacks, _) in runs.items():
            times[key].append(_epoch(model, *data[key[2]], batch, callbacks))
    print(
        f"\n{name}: epoch time at each library's settings, {samples} samples, batch {batch}, "
        f"median of {epochs} interleaved epochs"
    )
    best, best_arrays = {}, {}
    for (library, setting, feed), values in times.items():
        held = runs[(library, setting, feed)][2]() >= SPARSITY - 1e-3
        median = statistics.median(values)
        mark = "" if "dense" in library else f"   masks held: {'yes' if held else 'NO'}"
        print(f"  {library:<15} {setting:<10} {feed:<8} {median:7.3f} s{mark}")
        for table, counts in ((best, True), (best_arrays, feed == "arrays")):
            if held and counts and median < table.get(library, (None, float("inf")))[1]:
                table[library] = ((setting, feed), median)
    ratio = best["tf_lottery"][1] / best["tfmot"][1]
    for library, ((setting, feed), median) in best.items():
        print(f"  best {library:<15} {setting + ' ' + feed:<19} {median:7.3f} s")
    fastest = {library: min(times[(library, *best[library][0])]) for library in ("tf_lottery", "tfmot")}
    print(
        f"  fastest epochs at those settings, tf_lottery / tfmot  {fastest['tf_lottery'] / fastest['tfmot']:.3f}x"
    )
    print(
        f"  with NumPy arrays only: best tf_lottery {best_arrays['tf_lottery'][0][0]} / best tfmot "
        f"{best_arrays['tfmot'][0][0]}  {best_arrays['tf_lottery'][1] / best_arrays['tfmot'][1]:.3f}x"
    )
    print(f"  best tfmot / best tf_keras dense      {best['tfmot'][1] / best['tf_keras dense'][1]:.3f}x")
    print(f"  best tf_lottery / best Keras 3 dense  {best['tf_lottery'][1] / best['keras3 dense'][1]:.3f}x")
    print(
        f"  best Keras 3 dense / best tf_keras    {best['keras3 dense'][1] / best['tf_keras dense'][1]:.3f}x"
    )
    return ratio


# -- accuracy at 90% sparsity -------------------------------------------------------


def _fit(model, data, epochs, callbacks=()) -> float:
    """Trains; returns the mean epoch time (validation included, as in both libraries)."""
    (x, y), (xv, yv) = data
    start = time.perf_counter()
    model.fit(
        x, y, validation_data=(xv, yv), batch_size=100, epochs=epochs, verbose=0, callbacks=list(callbacks)
    )
    return (time.perf_counter() - start) / epochs


def _test_accuracy(model, x, y):
    logits = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _kernel_sparsity_tfkeras(model):
    kernels = [w.numpy() for w in model.weights if "kernel" in w.name]
    return 1.0 - sum(int(np.count_nonzero(k)) for k in kernels) / sum(k.size for k in kernels)


METHODS = ("dense", "tfmot", "gradual", "gradual_global", "imp", "oneshot")
LABELS = {
    "dense": "dense",
    "tfmot": "tfmot gradual",
    "gradual": "tf_lottery gradual",
    "gradual_global": "tf_lottery gradual (global)",
    "imp": "tf_lottery IMP",
    "oneshot": "tf_lottery one-shot",
}


def accuracy(name, make, reshape, epochs, seed, methods):
    """`{method: (test accuracy, sparsity, seconds per epoch)}` for one seed."""
    (x, y), (xv, yv), (xt, yt) = load_mnist1d(validation=500)
    x, xv, xt = reshape(x), reshape(xv), reshape(xt)
    data = ((x, y), (xv, yv))
    steps = epochs * int(np.ceil(len(x) / 100))
    # Masks change only at multiples of `frequency` up to `end_step`; make
    # `end_step` such a multiple so the schedule really ends at 90%.
    frequency = max(1, min(50, int(0.7 * steps) // 10))
    end_step = (int(0.7 * steps) // frequency) * frequency
    results = {}

    if "dense" in methods:
        keras.utils.set_random_seed(seed)
        dense = _compile(make(keras, seed), keras)
        seconds = _fit(dense, data, epochs)
        results["dense"] = (_test_accuracy(dense, xt, yt), 0.0, seconds)

    if "tfmot" in methods:
        tf_keras.utils.set_random_seed(seed)
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            0.0, SPARSITY, begin_step=0, end_step=end_step, frequency=frequency
        )
        gradual = _compile(tfmot_pruned(make(tf_keras, seed), schedule), tf_keras)
        seconds = _fit(gradual, data, epochs, [tfmot.sparsity.keras.UpdatePruningStep()])
        stripped = tfmot.sparsity.keras.strip_pruning(gradual)
        results["tfmot"] = (_test_accuracy(stripped, xt, yt), _kernel_sparsity_tfkeras(stripped), seconds)

    for method, scope in (("gradual", "layer"), ("gradual_global", "global")):
        if method in methods:
            keras.utils.set_random_seed(seed)
            model = _compile(tfl.prunable(make(keras, seed)), keras)
            schedule = tfl.PolynomialDecay(
                0.0, SPARSITY, begin_step=0, end_step=end_step, frequency=frequency
            )
            seconds = _fit(model, data, epochs, [tfl.GradualPruning(schedule, scope=scope)])
            results[method] = (_test_accuracy(model, xt, yt), tfl.sparsity_report(model).sparsity, seconds)

    for method, rounds in (("imp", 11), ("oneshot", 2)):
        if method in methods:
            keras.utils.set_random_seed(seed)
            model = _compile(tfl.prunable(make(keras, seed)), keras)
            lottery = tfl.LotteryCallback(rounds=rounds, target_sparsity=SPARSITY, rewind_to="0it", verbose=0)
            seconds = _fit(model, data, rounds * epochs, [lottery])
            results[method] = (_test_accuracy(model, xt, yt), tfl.sparsity_report(model).sparsity, seconds)

    print(f"\n{name} on MNIST-1D, seed {seed}, {steps} steps per training run: test accuracy")
    for key, (acc, sparsity, seconds) in results.items():
        print(f"  {LABELS[key]:<28} {acc:6.3f}   (sparsity {sparsity:.3f}, {seconds:.3f} s/epoch)")
    return results


def summarize(name, per_seed):
    print(f"\n{name}: test accuracy (%) over seeds {sorted(per_seed)}, mean +- std (min-max)")
    methods = [m for m in METHODS if all(m in r for r in per_seed.values())]
    for method in methods:
        values = [100 * r[method][0] for r in per_seed.values()]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"  {LABELS[method]:<28} {statistics.mean(values):6.2f} +- {spread:4.2f} "
            f"({min(values):.1f}-{max(values):.1f})  sparsity {per_seed[min(per_seed)][method][1]:.4f}"
        )
    if "tfmot" in methods and "gradual" in methods:
        gaps = [100 * (r["gradual"][0] - r["tfmot"][0]) for r in per_seed.values()]
        ratios = [r["gradual"][2] / r["tfmot"][2] for r in per_seed.values()]
        print(
            f"  gap tf_lottery gradual - tfmot gradual: {statistics.mean(gaps):+.2f} points "
            f"(per seed {', '.join(f'{g:+.1f}' for g in gaps)}); epoch time ratio "
            f"tf_lottery / tfmot {statistics.median(ratios):.3f}x (median over seeds)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--timing-epochs", type=int, default=9)
    parser.add_argument("--train-epochs", type=int, default=30, help="epochs per training run (MNIST-1D)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["dense", "tfmot", "gradual"])
    parser.add_argument("--models", nargs="+", choices=("lenet", "conv"), default=["lenet", "conv"])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="the compile settings the best-settings comparison times (default: all)",
    )
    parser.add_argument(
        "--best-settings-only",
        action="store_true",
        help="only the comparison at each library's best settings",
    )
    args = parser.parse_args()
    timing_epochs = 2 if args.quick else args.timing_epochs
    train_epochs = 2 if args.quick else args.train_epochs
    samples = 2400 if args.quick else 12000

    nets = {
        "lenet": ("LeNet-300-100 (40 inputs)", lambda lib, seed=0: lenet(lib, 40, seed), lambda a: a),
        "conv": ("Conv1D net", lambda lib, seed=0: convnet(lib, 40, seed), lambda a: a[..., None]),
    }
    if args.best_settings_only:
        args.models, args.skip_speed = [], True
    if not args.skip_speed:
        speed("LeNet-300-100 (784 inputs)", lambda lib: lenet(lib, 784), (784,), samples, timing_epochs)
        speed("Conv1D net (length 40)", lambda lib: convnet(lib, 40), (40, 1), samples, timing_epochs)
    for key in args.models:
        name, make, reshape = nets[key]
        per_seed = {
            seed: accuracy(name, make, reshape, train_epochs, seed, args.methods) for seed in args.seeds
        }
        summarize(name, per_seed)
    if not args.skip_speed or args.best_settings_only:
        ratio = best_settings(
            "LeNet-300-100 (784 inputs)",
            lambda lib: lenet(lib, 784),
            (784,),
            samples,
            timing_epochs,
            settings=args.settings,
        )
        print(
            f"\ntf_lottery / tfmot epoch time, each at its best settings (LeNet-300-100, 90% sparse): {ratio:.3f}x"
        )


if __name__ == "__main__":
    main()
