"""Size and speed of exported LeNet-300-100 tickets: dense vs. 90% pruned.

Exports the same architecture twice, dense and pruned to 90% (global
magnitude pruning), as a SavedModel (`tfl.export_saved_model`) and as
TensorFlow Lite (`tfl.export_tflite`, with `EXPERIMENTAL_SPARSITY` for the
pruned one), and reports in one run:

- the bytes on disk, raw and gzip'ed (a `.tar.gz` for a SavedModel), and the
  pruned / dense ratios;
- the median (and minimum) latency of the `serving_default` signature of each exported
  SavedModel, loaded with `tf.saved_model.load`, and of each TFLite model in
  the interpreter, at batch 1 and batch 256; calls alternate between dense
  and pruned so that machine noise hits both alike.

    python benchmarks/export_size.py [--repeats 300]

Targets (issue #5): SavedModel gzip pruned / dense <= ~0.25; SavedModel
latency pruned / dense ~= 1.0 (no leftover masking work).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.export.saved_model import artifact_size, export_saved_model  # noqa: E402
from tf_lottery.export.tflite import export_tflite, tflite_runner  # noqa: E402


def lenet_300_100() -> keras.Model:
    init = keras.initializers.GlorotNormal(seed=0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", kernel_initializer=init),
            keras.layers.Dense(100, activation="relu", kernel_initializer=init),
            keras.layers.Dense(10, kernel_initializer=init, name="output"),
        ]
    )


def _latency_ms(calls, repeats):
    """{name: (median, min)} milliseconds per call, the calls interleaved."""
    for call in calls.values():  # warm-up
        for _ in range(10):
            call()
    times = {name: [] for name in calls}
    order = list(calls.items())
    for _ in range(repeats):
        order.reverse()  # neither model always runs right after the other
        for name, call in order:
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: (1e3 * statistics.median(values), 1e3 * min(values)) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per model and batch size")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    dense = tfl.prunable(lenet_300_100())
    pruned = tfl.prunable(lenet_300_100())
    tfl.prune(pruned, target_sparsity=args.sparsity)
    assert abs(tfl.sparsity_report(pruned).sparsity - args.sparsity) < 1e-3

    with tempfile.TemporaryDirectory() as work:
        saved = {
            "dense": export_saved_model(dense, os.path.join(work, "dense")),
            "pruned": export_saved_model(pruned, os.path.join(work, "pruned")),
        }
        lite = {
            "dense": export_tflite(dense, os.path.join(work, "dense.tflite"), sparse=False),
            "pruned": export_tflite(pruned, os.path.join(work, "pruned.tflite")),
            "pruned, no sparse format": export_tflite(
                pruned, os.path.join(work, "plain.tflite"), sparse=False
            ),
        }
        sizes = {("SavedModel", k): artifact_size(v) for k, v in saved.items()}
        sizes.update({("TFLite", k): artifact_size(v) for k, v in lite.items()})

        print(
            f"LeNet-300-100 ({tfl.sparsity_report(pruned).total:,} prunable weights), pruned to {args.sparsity:.0%}"
        )
        print(f"\n{'artifact':<36} {'raw bytes':>12} {'gzip bytes':>12}")
        for (kind, name), size in sizes.items():
            print(f"{kind + ' ' + name:<36} {size.raw:>12,} {size.gzip:>12,}")
        print("\npruned / dense ratios")
        for kind, name in (
            ("SavedModel", "pruned"),
            ("TFLite", "pruned"),
            ("TFLite", "pruned, no sparse format"),
        ):
            ratio_raw = sizes[(kind, name)].raw / sizes[(kind, "dense")].raw
            ratio_gzip = sizes[(kind, name)].gzip / sizes[(kind, "dense")].gzip
            print(f"  {kind + ' ' + name:<34} raw {ratio_raw:.3f}   gzip {ratio_gzip:.3f}")

        print(f"\nlatency over {args.repeats} interleaved calls (ms): median, min")
        rng = np.random.default_rng(0)
        for batch in (1, 256):
            x = rng.normal(size=(batch, 784)).astype("float32")
            serving = {k: tf.saved_model.load(v).signatures["serving_default"] for k, v in saved.items()}
            runners = {k: tflite_runner(v) for k, v in lite.items() if k != "pruned, no sparse format"}
            tensor = tf.constant(x)
            calls = {
                f"SavedModel {k}": (lambda f=f, t=tensor: f(inputs=t)["output"].numpy())
                for k, f in serving.items()
            }
            calls.update(
                {f"TFLite {k}": (lambda r=r, x=x: r(inputs=x)["output"]) for k, r in runners.items()}
            )
            # Each kind timed on its own: TFLite's and TensorFlow's thread pools disturb each other.
            ms = {}
            for kind in ("SavedModel", "TFLite"):
                ms.update(_latency_ms({k: c for k, c in calls.items() if k.startswith(kind)}, args.repeats))
            for name, (median, fastest) in ms.items():
                print(f"  batch {batch:>3}  {name:<20} {median:8.3f} {fastest:8.3f}")
            for kind in ("SavedModel", "TFLite"):
                (dense_median, dense_min), (pruned_median, pruned_min) = (
                    ms[f"{kind} dense"],
                    ms[f"{kind} pruned"],
                )
                print(
                    f"  batch {batch:>3}  {kind} pruned / dense: median {pruned_median / dense_median:.3f}x, "
                    f"min {pruned_min / dense_min:.3f}x"
                )
            for name, call in calls.items():  # every export computes what the in-memory model does
                model = pruned if "pruned" in name else dense
                np.testing.assert_allclose(call(), keras.ops.convert_to_numpy(model(x)), atol=1e-5)


if __name__ == "__main__":
    main()
