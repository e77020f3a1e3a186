"""Epoch time of knowledge-distillation retraining over a plain ticket epoch.

Three ways to retrain the same 90%-sparse ticket on MNIST-1D, one epoch each:

- plain: the masked student alone, hard labels (a plain ticket epoch);
- KD, cached: `KDDistiller` on batches carrying the teacher's logits,
  computed once (`with_teacher_logits`), so no teacher runs in the step;
- KD, uncached: `KDDistiller` on plain batches: the dense teacher (the same
  architecture, as in KD tickets) runs forward in every step.

Epochs alternate (plain, cached, uncached, plain, ...) so that machine noise
hits all three alike; an epoch is timed from `on_epoch_begin` to
`on_epoch_end` (tracing is excluded by a warm-up epoch each). Reported: the
median epoch of each, and the median over rounds of each variant's epoch
over the plain epoch of the same round ("paired"), in wall time and in
process CPU time (all threads; less sensitive to other jobs on a shared
machine). All three read batches gathered by index from in-memory arrays
(`array_batches`, `with_teacher_logits`); `--pipeline examples` uses
per-example `from_tensor_slices` + `shuffle` + `batch` instead.

    python benchmarks/kd_epoch_time.py [--epochs 15] [--samples 40000] [--hidden 256,256] [--batch-size 100]

Target (issue #4): KD cached / plain <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.data.mnist1d import load_mnist1d  # noqa: E402
from tf_lottery.distillation import (  # noqa: E402
    INPUTS_KEY,
    TEACHER_LOGITS_KEY,
    KDDistiller,
    array_batches,
    teacher_logits,
)


class EpochTimer(keras.callbacks.Callback):
    """Wall and process CPU seconds (all threads) of one epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.began = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.began[0]
        self.cpu_seconds = time.process_time() - self.began[1]


def mlp(hidden) -> keras.Model:
    layers = [keras.Input((40,))] + [keras.layers.Dense(units, activation="relu") for units in hidden]
    return keras.Sequential(layers + [keras.layers.Dense(10, name="output")])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="timed epochs per variant")
    parser.add_argument("--hidden", default="256,256", help="hidden layer widths of the MLP")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--samples", type=int, default=0, help="training examples (0: the 4,000 of MNIST-1D)")
    parser.add_argument(
        "--pipeline",
        choices=("gather", "examples"),
        default="gather",
        help="'gather': batches gathered by index (array_batches, with_teacher_logits); 'examples': "
        "per-example from_tensor_slices + shuffle + batch",
    )
    parser.add_argument("--json", default="", help="also write the timings to this file")
    args = parser.parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]

    (x, y), _, _ = load_mnist1d()
    if args.samples:
        repeats = -(-args.samples // len(x))
        x, y = tf.tile(x, [repeats, 1]).numpy()[: args.samples], tf.tile(y, [repeats]).numpy()[: args.samples]
    keras.utils.set_random_seed(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher = mlp(hidden)
    teacher.compile(keras.optimizers.Adam(1e-3), loss)
    teacher.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)

    def ticket():
        student = tfl.prunable(mlp(hidden))
        tfl.prune(student, target_sparsity=0.9)
        return student

    plain = ticket()
    plain.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    variants = {"plain": plain}
    for name in ("kd_cached", "kd_uncached"):
        distiller = KDDistiller(teacher, ticket(), kd_weight=0.9, temperature=5.0)
        distiller.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        variants[name] = distiller

    options = dict(batch_size=args.batch_size, seed=0, drop_remainder=True)
    began = time.perf_counter()
    logits = teacher_logits(teacher, x)
    caching_seconds = time.perf_counter() - began
    cached = ({INPUTS_KEY: x, TEACHER_LOGITS_KEY: logits}, y)
    if args.pipeline == "gather":
        data = {
            name: array_batches(cached if name == "kd_cached" else (x, y), **options) for name in variants
        }
    else:

        def examples(arrays):
            dataset = tf.data.Dataset.from_tensor_slices(arrays).shuffle(len(x), seed=0)
            return dataset.batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        data = {name: examples(cached if name == "kd_cached" else (x, y)) for name in variants}

    timer = EpochTimer()
    times = {name: [] for name in variants}
    cpu_times = {name: [] for name in variants}
    for round_index in range(args.epochs + 1):  # round 0 is the warm-up
        for name, model in variants.items():
            model.fit(data[name], epochs=1, callbacks=[timer], shuffle=False, verbose=0)
            if round_index:
                times[name].append(timer.seconds)
                cpu_times[name].append(timer.cpu_seconds)

    def paired(name, samples):
        """Median over rounds of this variant's time over the plain epoch of the same round."""
        return statistics.median(a / b for a, b in zip(samples[name], samples["plain"]))

    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu_times.items()}
    steps = len(x) // args.batch_size
    print(
        f"MNIST-1D MLP 40-{'-'.join(map(str, hidden))}-10 (90% sparse student, dense teacher), "
        f"{len(x)} examples, batch {args.batch_size} ({steps} steps/epoch), {args.pipeline} pipeline; "
        f"medians of {args.epochs} interleaved epochs"
    )
    print(
        f"  {'':<26}  {'wall s':>7} {'x plain':>8} {'paired':>7}   {'CPU s':>7} {'x plain':>8} {'paired':>7}"
    )
    for name, label in (
        ("plain", "plain ticket epoch"),
        ("kd_cached", "KD epoch, cached logits"),
        ("kd_uncached", "KD epoch, teacher in step"),
    ):
        wall = f"{medians[name]:7.3f} {medians[name] / medians['plain']:8.3f} {paired(name, times):7.3f}"
        cpu = f"{cpu_medians[name]:7.3f} {cpu_medians[name] / cpu_medians['plain']:8.3f}"
        print(f"  {label:<26}: {wall}   {cpu} {paired(name, cpu_times):7.3f}")
    print(f"  one-off teacher.predict for the cache: {caching_seconds:.3f} s")
    print(
        f"  KD cached / plain (paired wall-time ratio) = {paired('kd_cached', times):.3f}x "
        f"(target <= 1.15x); teacher in step: {paired('kd_uncached', times):.3f}x"
    )
    if args.json:
        result = {
            "times": times,
            "cpu_times": cpu_times,
            "medians": medians,
            "caching_seconds": caching_seconds,
        }
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
