"""Quick check: MobileNetV2 with half of its prunable channels removed by `tfl.shrink`.

Builds keras.applications MobileNetV2 (alpha 1.0, 224x224, weights=None, logits out),
prunes half of its prunable channels with
`tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")`
(half of each group), shrinks it, and
reports in one run:

- parameters of the dense model and of the shrunk model, and their ratio;
- that the shrunk model computes what the masked model computes (max |diff|);
- the median latency of each exported SavedModel's `serving_default`
  (`tf.saved_model.load` in this process), batch 1, one intra-op and one
  inter-op thread, calls interleaved between dense and shrunk; and of each
  TFLite flatbuffer (`tfl.export_tflite`, interpreter with 1 thread),
  unless `--no-tflite`.

    PYTHONPATH=$PWD python benchmarks/serving_shrink_check.py [--repeats 50]

Target (issue 23 item 5): parameters <= 0.5x, SavedModel and TFLite latency <= 0.6x.
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
    parser.add_argument("--tflite", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)

    dense = keras.applications.MobileNetV2(
        input_shape=(args.size, args.size, 3), alpha=args.alpha, weights=None, classifier_activation=None
    )
    masked = tfl.prunable(dense)
    tfl.prune(masked, target_sparsity=0.5, structure="channels", scope="layer")
    small, report = tfl.shrink(masked, return_report=True)
    x = np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(masked(x))
    diff = float(np.max(np.abs(logits - keras.ops.convert_to_numpy(small(x)))))

    with tempfile.TemporaryDirectory() as work:
        paths = {
            "dense": tfl.export_saved_model(dense, os.path.join(work, "dense")),
            "shrunk": tfl.export_saved_model(small, os.path.join(work, "shrunk")),
        }
        served = {k: tf.saved_model.load(v).signatures["serving_default"] for k, v in paths.items()}
        tensor = tf.constant(x)
        ms = _median_ms({k: (lambda f=f: f(tensor)) for k, f in served.items()}, args.repeats)
        lite_ms = {}
        if args.tflite:
            runners = {}
            for name, model in (("dense", dense), ("shrunk", small)):
                path = tfl.export_tflite(model, os.path.join(work, f"{name}.tflite"), sparse=False)
                interpreter = tf.lite.Interpreter(model_path=path, num_threads=1)
                runner = interpreter.get_signature_runner("serving_default")
                (key,) = runner.get_input_details()
                runners[name] = lambda r=runner, k=key: r(**{k: x})
            # Timed apart from the SavedModels: TFLite's and TensorFlow's thread pools disturb each other.
            lite_ms = _median_ms(runners, args.repeats)

    print(f"MobileNetV2 alpha {args.alpha}, {args.size}x{args.size}, weights=None, half the channels pruned")
    print(f"parameters: dense {dense.count_params():,}, shrunk {small.count_params():,}")
    print(f"max |masked - shrunk| = {diff:.2e} (logits up to {np.max(np.abs(logits)):.2e})")
    print(
        f"SavedModel batch 1, 1 thread, median of {args.repeats}: dense {ms['dense']:.2f} ms, shrunk {ms['shrunk']:.2f} ms"
    )
    if lite_ms:
        print(
            f"TFLite batch 1, 1 thread, median of {args.repeats}: dense {lite_ms['dense']:.2f} ms, "
            f"shrunk {lite_ms['shrunk']:.2f} ms"
        )
    print(
        f"ratios: parameters {small.count_params() / dense.count_params():.3f}x, "
        f"SavedModel latency {ms['shrunk'] / ms['dense']:.3f}x"
        + (f", TFLite latency {lite_ms['shrunk'] / lite_ms['dense']:.3f}x" if lite_ms else "")
    )
    del report


if __name__ == "__main__":
    main()
