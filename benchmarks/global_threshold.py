"""Time of one global magnitude-pruning step over 1M, 5M and 25M weights.

Two figures per size: the selection alone (`select_lowest`: exact-count
global threshold with deterministic ties over the surviving scores) and the
whole `tfl.prune` call (read weights, score, select, write masks and
zero the pruned weights). 25M is about ResNet-50.

    python benchmarks/global_threshold.py [--sizes 1 5 25] [--repeats 3]

Target (issue #2): global threshold over 25M weights well under 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.pruning.pruner import select_lowest  # noqa: E402


def _model(million: int) -> keras.Model:
    """Five square Dense layers holding `million` million kernel weights."""
    width = int(round((million * 1e6 / 5) ** 0.5))
    layers = [keras.Input((width,))] + [keras.layers.Dense(width, use_bias=False) for _ in range(5)]
    return tfl.prunable(keras.Sequential(layers))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 25], help="millions of weights")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'weights':>10} {'select (s)':>11} {'prune() (s)':>12}")
    for million in args.sizes:
        model = _model(million)
        wrappers = tfl.prune_wrappers(model)
        total = sum(int(np.prod(w.shape)) for wr in wrappers for w in wr.pruned_weights)
        scores = tfl.scoring.magnitude(wrappers)
        alive = [np.ones(s.shape, bool) for s in scores]
        select = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            select_lowest(scores, alive, int(0.2 * total))
            select.append(time.perf_counter() - start)
        whole = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tfl.prune(model, rate=0.2)
            whole.append(time.perf_counter() - start)
        print(f"{total:>10,d} {statistics.median(select):>11.3f} {statistics.median(whole):>12.3f}")
        del model
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
