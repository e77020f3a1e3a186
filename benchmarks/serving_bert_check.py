"""Quick check: a keras_hub BERT with half of its heads and half of its feed-forward units removed.

Builds a BERT-small-like `keras_hub.models.BertBackbone` (random init, no
preset download: 4 layers, hidden 512, 8 heads, intermediate 2048), exports
it dense, then prunes half of the heads of every attention layer
(`tfl.prune(..., structure="heads", scope="layer")`) and half of the
feed-forward units of every block (`structure="channels"`, `scope="layer"`),
shrinks it with `tfl.shrink` (each block becomes a `ShrunkTransformerEncoder`
with 4 heads of 64 and 1024 units) and reports in one run:

- parameters of the dense and of the shrunk model, and their ratio;
- that the shrunk model computes what the masked model computes (max |diff|);
- the median latency of each exported SavedModel's `serving_default`
  (`tf.saved_model.load` in this process), batch 1, sequence length 128,
  one intra-op and one inter-op thread, calls interleaved between dense and
  shrunk.

    PYTHONPATH=$PWD python benchmarks/serving_bert_check.py [--repeats 30]

Target (issue 23 item 5): SavedModel latency <= 0.65x dense at sequence
length 128. To be folded into `benchmarks/serving.py`.
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
        for _ in range(3):
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


def _tokens(sequence_length: int, vocabulary_size: int) -> dict:
    rng = np.random.default_rng(0)
    return {
        "token_ids": rng.integers(1, vocabulary_size, (1, sequence_length)).astype("int32"),
        "segment_ids": np.zeros((1, sequence_length), "int32"),
        "padding_mask": np.ones((1, sequence_length), "int32"),
    }


def _first(outputs) -> np.ndarray:
    return keras.ops.convert_to_numpy(outputs["sequence_output"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--hidden_dim", type=int, default=512)
    parser.add_argument("--num_heads", type=int, default=8)
    parser.add_argument("--intermediate_dim", type=int, default=2048)
    parser.add_argument("--vocabulary_size", type=int, default=30522)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    import keras_hub

    model = keras_hub.models.BertBackbone(
        vocabulary_size=args.vocabulary_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        max_sequence_length=max(512, args.sequence_length),
    )
    dense_params = model.count_params()
    x = _tokens(args.sequence_length, args.vocabulary_size)
    with tempfile.TemporaryDirectory() as work:
        # Exported before pruning: `prunable` wraps a keras_hub model in place.
        paths = {"dense": tfl.export_saved_model(model, os.path.join(work, "dense"))}
        masked = tfl.prunable(model)
        tfl.prune(masked, target_sparsity=0.5, structure="heads", scope="layer")
        tfl.prune(masked, target_sparsity=0.5, structure="channels", scope="layer")
        small, report = tfl.shrink(masked, return_report=True)
        diff = float(np.max(np.abs(_first(masked(x)) - _first(small(x)))))
        paths["shrunk"] = tfl.export_saved_model(small, os.path.join(work, "shrunk"))
        served = {k: tf.saved_model.load(v).signatures["serving_default"] for k, v in paths.items()}
        tensors = {k: tf.constant(v) for k, v in x.items()}
        ms = _median_ms({k: (lambda f=f: f(**tensors)) for k, f in served.items()}, args.repeats)

    blocks = [layer for layer in small.layers if "transformer_layer" in layer.name]
    print(
        f"keras_hub BertBackbone: {args.num_layers} layers, hidden {args.hidden_dim}, {args.num_heads} heads, "
        f"intermediate {args.intermediate_dim}, random init; half the heads and feed-forward units removed"
    )
    print(
        "shrunk blocks (heads x head size, units): "
        + ", ".join(f"{b.num_heads}x{b.key_dim}, {b.intermediate_dim}" for b in blocks)
    )
    print(f"parameters: dense {dense_params:,}, shrunk {small.count_params():,}")
    print(f"max |masked - shrunk| = {diff:.2e}")
    print(
        f"SavedModel batch 1, sequence {args.sequence_length}, 1 thread, median of {args.repeats}: "
        f"dense {ms['dense']:.2f} ms, shrunk {ms['shrunk']:.2f} ms"
    )
    print(
        f"ratios: parameters {small.count_params() / dense_params:.3f}x, latency {ms['shrunk'] / ms['dense']:.3f}x "
        "(target <= 0.65x)"
    )
    del report


if __name__ == "__main__":
    main()
