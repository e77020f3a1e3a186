"""Time and peak extra memory of `tfl.oneshot` magnitude, Wanda and SparseGPT on a GPT-2-small-sized model.

The model is keras_hub's `GPT2CausalLM` built from GPT-2 small's config with
random weights (no preset download): vocabulary 50257, 12 layers, 12 heads,
hidden 768, intermediate 3072, context 1024; 124M parameters, every
projection in a `PruneWrapper`. Calibration: 32 sequences of 256 random
token ids, 8 sequences per forward pass (`--batch-size`: one block's
forward pass at 256 tokens takes about 40 MB of transient memory per
sequence, 1.3 GB at 32, measured). Each method prunes to 50% (unstructured) in a fresh subprocess,
so that peaks do not mix and every method starts from the same dense model.

Peak extra memory: the process's RSS high-water mark during the call
(`VmHWM` in /proc/self/status, reset by writing 5 to /proc/self/clear_refs
just before) minus its RSS just before, after the model was built and had
run once on a calibration batch (as in benchmarks/prune_scale.py). Printed
in MB and as a multiple of the bytes of the model's weights (float32).
With glibc's default allocator, buffers freed by TensorFlow stay in the
process (its mmap threshold rises to the largest buffer freed), so the
high-water mark creeps up from step to step; `--mmap-threshold 1048576`
(`MALLOC_MMAP_THRESHOLD_`) hands buffers over 1 MB back to the system when
freed, which shows the memory actually in use. Also printed: the CPU seconds of the call (all threads), which say more than
the wall time when other processes share the cores.

    python benchmarks/oneshot_scale.py [--quick] [--methods magnitude wanda sparsegpt]
        [--batch-size 8] [--rerun] [--layers N] [--mmap-threshold BYTES]

`--quick` runs a tiny config (2 layers, hidden 64) in seconds; `--rerun`
refuses the block-by-block walk, so calibration reruns the whole model for
every step (the path before block-wise calibration, kept for models whose
blocks cannot be isolated).

Target (issue #24, item 6): on 2 cores, Wanda < 2 min and SparseGPT < 15 min,
peak extra memory <= 1.5x the model's weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from rss import reset_peak_rss, status_kib  # benchmarks/rss.py, beside this script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {
    "gpt2_small": dict(
        vocabulary_size=50257,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=3072,
        max_sequence_length=1024,
    ),
    "quick": dict(
        vocabulary_size=1000,
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=256,
        max_sequence_length=64,
    ),
}
DATA = {"gpt2_small": (32, 256), "quick": (8, 32)}  # sequences, tokens
TARGET_SECONDS = {"wanda": 120, "sparsegpt": 900}
TARGET_MEMORY = 1.5


def _config(name: str, layers: int | None) -> dict:
    return {**CONFIGS[name], **({"num_layers": layers} if layers else {})}


def _child(method: str, config: str, batch_size: int, rerun: bool, layers: int | None) -> dict:
    import keras
    import keras_hub
    import numpy as np

    import tf_lottery as tfl

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(**_config(config, layers))
    model = tfl.prunable(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None))
    sequences, tokens = DATA[config]
    rng = np.random.default_rng(0)
    data = {
        "token_ids": rng.integers(0, CONFIGS[config]["vocabulary_size"], (sequences, tokens)).astype("int32"),
        "padding_mask": np.ones((sequences, tokens), "int32"),
    }
    model({k: v[:1] for k, v in data.items()}, training=False)  # run once (1 sequence): the baseline
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.trainable_weights)
    parameters = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    if rerun:
        from tf_lottery.pruning.oneshot import blockwise

        blockwise.plan = lambda model, wrappers: "refused by --rerun"
    measured = reset_peak_rss()
    before = status_kib("VmRSS") if measured else 0
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "magnitude":
        report = tfl.oneshot.magnitude(model, 0.5)
    else:
        report = getattr(tfl.oneshot, method)(model, data, 0.5, batch_size=batch_size)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = (status_kib("VmHWM") - before) * 1024 if measured else None
    return {
        "method": method,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_bytes": peak,
        "weight_bytes": weights,
        "parameters": parameters,
        "pruned": len(report.pruned),
        "calibration": getattr(report, "calibration", None),
    }


def _run(method: str, args) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        method,
        "--batch-size",
        str(args.batch_size),
    ]
    command += ["--quick"] * args.quick + ["--rerun"] * args.rerun
    command += ["--layers", str(args.layers)] if args.layers else []
    env = dict(os.environ)
    # The children import the tf_lottery beside this script, not an installed one.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config (2 layers, hidden 64)")
    parser.add_argument("--methods", nargs="+", default=["magnitude", "wanda", "sparsegpt"])
    parser.add_argument("--batch-size", type=int, default=8, help="calibration sequences per forward pass")
    parser.add_argument("--rerun", action="store_true", help="rerun the whole model for every step")
    parser.add_argument(
        "--mmap-threshold", type=int, help="glibc's MALLOC_MMAP_THRESHOLD_ for the runs (e.g. 1048576)"
    )
    parser.add_argument("--layers", type=int, help="transformer layers instead of the config's")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = "quick" if args.quick else "gpt2_small"
    if args.child:
        print(json.dumps(_child(args.child, config, args.batch_size, args.rerun, args.layers)))
        return
    sequences, tokens = DATA[config]
    c = _config(config, args.layers)
    malloc = f", MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}" if args.mmap_threshold else ""
    print(
        f"GPT2CausalLM {c['num_layers']} layers, {c['num_heads']} heads, hidden {c['hidden_dim']}, "
        f"intermediate {c['intermediate_dim']}, vocabulary {c['vocabulary_size']} (random init); "
        f"{sequences} sequences x {tokens} tokens, batch size {args.batch_size}, sparsity 0.5, "
        f"{os.cpu_count()} CPU cores{malloc}"
    )
    print(
        f"{'method':<10} {'seconds':>8} {'CPU s':>8} {'peak extra MB':>14} {'x weights':>10}  target  calibration"
    )
    for method in args.methods:
        row = _run(method, args)
        peak = row["peak_bytes"]
        ratio = peak / row["weight_bytes"] if peak is not None else None
        limit = TARGET_SECONDS.get(method)
        met = (limit is None or row["seconds"] < limit) and (ratio is None or ratio <= TARGET_MEMORY)
        verdict = (
            "n/a" if args.quick or args.layers else ("met" if met else "MISSED")
        )  # targets are for GPT-2 small
        print(
            f"{method:<10} {row['seconds']:>8.1f} {row.get('cpu_seconds', float('nan')):>8.1f} {peak / 2**20 if peak is not None else float('nan'):>14.0f} "
            f"{ratio if ratio is not None else float('nan'):>9.2f}x  {verdict:>6}  "
            f"{row['calibration'] or '-'}"
        )
    print(
        f"weights: {row['parameters']:,} parameters, {row['weight_bytes'] / 2**20:.0f} MB. Targets (issue #24 "
        f"item 6): wanda < {TARGET_SECONDS['wanda']} s, sparsegpt < {TARGET_SECONDS['sparsegpt']} s, "
        f"peak extra memory <= {TARGET_MEMORY}x the weights"
    )


if __name__ == "__main__":
    main()
