"""Masked over dense training step time of ResNet-20, with and without XLA and mixed precision.

ResNet-20 (`tf_lottery.models.resnet_cifar.resnet20`) on CIFAR-shaped
synthetic data (32x32x3 images, 10 classes, one batch repeated, so input
reading costs nothing), SGD with momentum. Four variants: float32 or
`mixed_float16`, each compiled with and without `jit_compile` (XLA). In
each, a plain Keras model and the same model wrapped with `tfl.prunable`
and pruned to 90% sparsity are compiled and warmed up (tracing and XLA
compilation are not timed), then timed in alternating `fit` epochs of
`--steps` steps each; the median epoch time per step of each model is
compared. Made for a GPU, where the defaults (`--steps 100 --rounds 5`)
should take well under 5 minutes, most of it tracing and XLA compilation;
`--quick` runs it end to end on a CPU in a few minutes (float16
convolutions without XLA are slow on a CPU: seconds per step).

    python benchmarks/gpu_step_time.py [--batch 128] [--steps 100] [--rounds 5]
        [--variants float32 float32-xla mixed mixed-xla] [--steps-per-execution 1]
    python benchmarks/gpu_step_time.py --quick   # CPU smoke run: batch 4, 2 steps

Target (issue #13): a table to compare with the CPU ratios of
`benchmarks/masked_overhead.py` (masked / dense <= 1.01x under XLA).
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

import tf_lottery as tfl  # noqa: E402
from tf_lottery.models.resnet_cifar import resnet20  # noqa: E402

# name -> (dtype policy, jit_compile)
VARIANTS = {
    "float32": ("float32", False),
    "float32-xla": ("float32", True),
    "mixed": ("mixed_float16", False),
    "mixed-xla": ("mixed_float16", True),
}


class _EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (the end of an epoch waits for its last step)."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _data(batch: int) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, batch)
    return tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)


def _compiled(masked: bool, jit: bool, steps_per_execution: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = resnet20((32, 32, 3), 10)
    if masked:
        model = tfl.prunable(model)
        tfl.prune(model, target_sparsity=0.9)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
        steps_per_execution=steps_per_execution,
    )
    return model


def _ms_per_step(model, data, steps: int) -> float:
    timer = _EpochTimer()
    model.fit(data, epochs=1, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0)
    return 1000 * timer.seconds[0] / steps


def measure(policy: str, jit: bool, args) -> tuple[float, float]:
    """Median ms/step of the dense and the masked model in one variant."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    try:
        data = _data(args.batch)
        models = {
            kind: _compiled(kind == "masked", jit, args.steps_per_execution) for kind in ("dense", "masked")
        }
        for model in models.values():
            _ms_per_step(model, data, max(args.steps_per_execution, 2))  # trace, compile, warm up
        times = {kind: [] for kind in models}
        for _ in range(args.rounds):
            for kind, model in models.items():
                times[kind].append(_ms_per_step(model, data, args.steps))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return statistics.median(times["dense"]), statistics.median(times["masked"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per model (median)")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 steps, 1 round: a CPU smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds, args.steps_per_execution = 4, 2, 1, 1
    gpus = tf.config.list_physical_devices("GPU")
    device = ", ".join(d.name for d in gpus) if gpus else "CPU only (no GPU visible)"
    print(f"ResNet-20, batch {args.batch}, {args.steps} steps x {args.rounds} rounds, 90% sparse; {device}")
    start = time.perf_counter()
    rows = []
    print(f"{'variant':<24} {'dense ms/step':>14} {'masked ms/step':>15} {'masked/dense':>13}")
    for name in args.variants:
        policy, jit = VARIANTS[name]
        dense, masked = measure(policy, jit, args)
        variant = f"{policy}, {'XLA' if jit else 'no XLA'}"
        rows.append((variant, dense, masked))
        print(f"{variant:<24} {dense:>14.2f} {masked:>15.2f} {masked / dense:>12.3f}x", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
