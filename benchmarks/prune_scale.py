"""Time and peak extra memory of one global magnitude `tfl.prune` at GPT-2 scale.

Each model has GPT-2's shape: a token and a position `Embedding`, then per
block the attention's qkv (`d x 3d`) and output (`d x d`) kernels and the
MLP's `d x 4d` and `4d x d` kernels, every layer in a `PruneWrapper`. The
sizes are about 1M, 25M and 125M prunable weights (the last is GPT-2 small,
124M: d=768, 12 blocks, vocabulary 50257, context 1024). The models are
built once and never called on data. Each is pruned in IMP rounds at rate
0.2, the first from dense; all sizes run in one process.

Two peaks of extra memory per `prune` call, as multiples of the pruned
weights' bytes (4 per float32 weight):

- NumPy (tracemalloc): NumPy registers its buffers with `tracemalloc`, so
  the traced peak is exactly the pruner's own arrays (masks read, scores,
  the selection buffer, new masks). It does not see TensorFlow's tensors.
  Measured on one more round (tracing slows Python a little), with the
  masks reset to all ones first: every weight alive, the worst case, as in
  the first round from dense.
- RSS: the process's high-water mark (`VmHWM` in /proc/self/status, reset
  by writing 5 to /proc/self/clear_refs before the call) minus its resident
  size before it. This sees everything, TensorFlow's tensors in
  `set_masks` (mask copies, the weights written back through the mask)
  included, at page granularity; memory malloc reuses from earlier frees is
  not counted again, so it can read lower than the NumPy figure. The largest
  over the timed rounds (the first, from dense, is the largest).

    python benchmarks/prune_scale.py [--sizes 1 25 125] [--rounds 3]

Target (issue #13): 125M weights pruned in < 3 s with peak extra memory
<= 1.5x the weights, on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from rss import reset_peak_rss, status_kib  # noqa: E402 - benchmarks/rss.py, beside this script

import tf_lottery as tfl  # noqa: E402

# millions -> (width, blocks, vocabulary, context)
SHAPES = {
    1: (128, 4, 2048, 256),
    25: (512, 6, 12288, 512),
    125: (768, 12, 50257, 1024),
}


def gpt2_shaped(width: int, blocks: int, vocabulary: int, context: int) -> keras.Model:
    """A model with GPT-2's prunable kernels (no attention, norms or training)."""

    def wrapped(layer):
        return tfl.PruneWrapper(layer)

    tokens = keras.Input((1,), dtype="int32")
    x = wrapped(keras.layers.Embedding(vocabulary, width, name="wte"))(tokens)
    x = x + wrapped(keras.layers.Embedding(context, width, name="wpe"))(tokens)
    for b in range(blocks):
        qkv = wrapped(keras.layers.Dense(3 * width, use_bias=False, name=f"h{b}_qkv"))(x)
        x = x + wrapped(keras.layers.Dense(width, use_bias=False, name=f"h{b}_attn_proj"))(qkv[..., :width])
        hidden = wrapped(keras.layers.Dense(4 * width, use_bias=False, name=f"h{b}_fc"))(x)
        x = x + wrapped(keras.layers.Dense(width, use_bias=False, name=f"h{b}_mlp_proj"))(hidden)
    return keras.Model(tokens, x)


def _timed_round(model) -> tuple[float, int | None]:
    """Seconds of one `prune` call and its peak RSS growth in bytes (None without /proc)."""
    measured = reset_peak_rss()
    before = status_kib("VmRSS") if measured else 0
    start = time.perf_counter()
    tfl.prune(model, rate=0.2)
    seconds = time.perf_counter() - start
    return seconds, (status_kib("VmHWM") - before) * 1024 if measured else None


def _numpy_peak(model) -> int:
    """Peak bytes NumPy held during one `prune` call with every weight alive, over what it held before."""
    for wrapper in tfl.prune_wrappers(model):
        wrapper.set_masks([np.ones(tuple(m.shape), bool) for m in wrapper.masks])
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    tfl.prune(model, rate=0.2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - baseline


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(SHAPES), choices=sorted(SHAPES))
    parser.add_argument("--rounds", type=int, default=3, help="timed IMP rounds per size (median)")
    args = parser.parse_args(argv)
    print(
        f"{'weights':>12} {'build (s)':>10} {'prune (s)':>10} {'first (s)':>10} "
        f"{'RSS peak':>9} {'NumPy peak':>11}   (peaks: extra memory / pruned weight bytes)"
    )
    for million in args.sizes:
        start = time.perf_counter()
        model = gpt2_shaped(*SHAPES[million])
        build = time.perf_counter() - start
        weight_bytes = sum(
            math.prod(w.shape) * 4 for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights
        )
        rounds = [_timed_round(model) for _ in range(args.rounds)]
        numpy_peak = _numpy_peak(model)
        seconds = statistics.median(s for s, _ in rounds)
        rss = [r for _, r in rounds if r is not None]
        rss_peak = f"{max(rss) / weight_bytes:.2f}x" if rss else "n/a"
        print(
            f"{weight_bytes // 4:>12,d} {build:>10.1f} {seconds:>10.3f} {rounds[0][0]:>10.3f} "
            f"{rss_peak:>9} {numpy_peak / weight_bytes:>10.2f}x",
            flush=True,
        )
        del model
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
