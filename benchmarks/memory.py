"""Peak resident memory of a masked training run over the same dense run.

Each run is a fresh subprocess (so the peaks do not mix) that builds a model,
trains it for a few epochs on random data and reports its peak resident set
size (`ru_maxrss`). The masked run wraps the model with `tfl.prunable` and
prunes it to 90% first. Also printed: the bytes held by the model's weights
and masks, against the dense weights alone (masks are 1 byte per pruned
weight; tensorflow-model-optimization keeps a float32 mask per weight).

    python benchmarks/memory.py [--width 2048]

Target (issue #7): masked / dense <= 1.1 for peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras, numpy as np
import tf_lottery as tfl

masked, width = sys.argv[1] == "masked", int(sys.argv[2])
model = keras.Sequential([
    keras.Input((784,)),
    keras.layers.Dense(width, activation="relu"),
    keras.layers.Dense(width, activation="relu"),
    keras.layers.Dense(10),
])
if masked:
    model = tfl.prunable(model)
    tfl.prune(model, target_sparsity=0.9)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
rng = np.random.default_rng(0)
x = rng.normal(size=(6000, 784)).astype("float32")
y = rng.integers(0, 10, 6000)
model.fit(x, y, batch_size=100, epochs=3, verbose=0)
weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "weight_bytes": weights}))
"""


def _run(kind: str, width: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(width)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048, help="hidden width of the 784-W-W-10 MLP")
    args = parser.parse_args()
    dense, masked = _run("dense", args.width), _run("masked", args.width)
    print(f"MLP 784-{args.width}-{args.width}-10, Adam, 3 epochs")
    print(f"  peak RSS dense   {dense['peak_kib'] / 1024:8.1f} MiB")
    print(f"  peak RSS masked  {masked['peak_kib'] / 1024:8.1f} MiB")
    print(f"  masked / dense   {masked['peak_kib'] / dense['peak_kib']:.3f}x   (target <= 1.1x)")
    print(
        f"  weights + masks over weights: {masked['weight_bytes'] / dense['weight_bytes']:.3f}x "
        "(bool masks: 1 byte per pruned weight)"
    )


if __name__ == "__main__":
    main()
