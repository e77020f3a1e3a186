"""Quick check: MobileNetV2 with half of its prunable channels removed by `tfl.shrink`.

Builds keras.applications MobileNetV2 (alpha 1.0, 224x224, weights=None),
prunes half of its prunable channels with
`tfl.prune(model, target_sparsity=0.5, structure="channels")`, shrinks it, and
reports in one run:

- parameters of the dense model and of the shrunk model, and their ratio;
- that the shrunk model computes what the masked model computes (max |diff|);
- the median latency of each exported SavedModel's `serving_default`
  (`tf.saved_model.load` in this process), batch 1, one intra-op and one
  inter-op thread, calls interleaved between dense and shrunk.

    PYTHONPATH=$PWD python benchmarks/serving_shrink_check.py [--repeats 50]

Target (issue 23 item 5): parameters <= 0.5x and SavedModel latency <= 0.6x.
To be folded into `benchmarks/serving.py`.
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


def _median_ms(calls: dict, repeats: int) -> dict:
    for call in calls.values():
        for _ in range(5):
            call()
    times = {name: [] for name in calls}
    order = list(calls.items())
    for _ in range(repeats):
        order.reverse()
        for name, call in order:
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)

    dense = keras.applications.MobileNetV2(
        input_shape=(args.size, args.size, 3), alpha=args.alpha, weights=None
    )
    masked = tfl.prunable(dense)
    tfl.prune(masked, target_sparsity=0.5, structure="channels")
    small, report = tfl.shrink(masked, return_report=True)
    x = np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)).astype("float32")
    diff = float(np.max(np.abs(keras.ops.convert_to_numpy(masked(x)) - keras.ops.convert_to_numpy(small(x)))))

    with tempfile.TemporaryDirectory() as work:
        paths = {
            "dense": tfl.export_saved_model(dense, os.path.join(work, "dense")),
            "shrunk": tfl.export_saved_model(small, os.path.join(work, "shrunk")),
        }
        served = {k: tf.saved_model.load(v).signatures["serving_default"] for k, v in paths.items()}
        tensor = tf.constant(x)
        ms = _median_ms({k: (lambda f=f: f(tensor)) for k, f in served.items()}, args.repeats)

    print(f"MobileNetV2 alpha {args.alpha}, {args.size}x{args.size}, weights=None, half the channels pruned")
    print(f"parameters: dense {dense.count_params():,}, shrunk {small.count_params():,}")
    print(f"max |masked - shrunk| = {diff:.2e}")
    print(
        f"SavedModel batch 1, 1 thread, median of {args.repeats}: dense {ms['dense']:.2f} ms, shrunk {ms['shrunk']:.2f} ms"
    )
    print(
        f"ratios: parameters {small.count_params() / dense.count_params():.3f}x, "
        f"latency {ms['shrunk'] / ms['dense']:.3f}x"
    )
    del report


if __name__ == "__main__":
    main()
