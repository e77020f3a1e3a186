"""Time cost of RigL and SET rewiring over static sparse training.

Copies of one 90%-sparse network (ERK masks) train on the same data
with the same optimizer: static (masks fixed), static with a do-nothing
`on_train_batch_end` callback (what any per-batch Keras callback costs: Keras
then converts the logs to Python numbers after every step and stops
dispatching callbacks asynchronously), SET, RigL with the gradient of the
training batch captured in the step (`rigl`, the default), RigL on a drawn
batch (`rigl_drawn`), all rewiring every `--delta-t` steps, and RigL's
capture hooks with no update in reach (`rigl_idle`: the cost of the hooks on
non-update steps alone). Time is measured in blocks of exactly `delta_t`
steps (one `fit()` call each), so every RigL/SET block contains exactly one
update (its extra dense gradient, the drop/grow on the host, the mask and
optimizer-slot writes). Blocks alternate between the models (static, hook,
SET, RigL, static, ...) so that machine noise hits them alike, and the
median block time of each is compared. The update itself is also timed on
its own.

    python benchmarks/rigl_overhead.py [--model mnist1d_mlp|lenet_300_100] [--blocks 9] [--jit-compile]
        [--steps-per-execution 10] [--pairs 20] [--clock wall|cpu]
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
from tf_lottery.models import build_model  # noqa: E402
from tf_lottery.pruning import distributions as sparsity_distributions  # noqa: E402
from tf_lottery.sparse_training.callback import DynamicSparseTraining  # noqa: E402

SHAPES = {"mnist1d_mlp": (40,), "lenet_300_100": (784,)}


def _model(name: str, sparsity: float, steps_per_execution: int, jit_compile: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = tfl.prunable(build_model(name, SHAPES[name], 10))
    sparsity_distributions.prune_to_distribution(model, sparsity, "erk", seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


class _BatchHook(keras.callbacks.Callback):
    """A per-batch callback that does nothing."""

    def on_train_batch_end(self, batch, logs=None):
        pass


# `--clock cpu` counts this process's CPU time over all its threads: less sensitive than wall
# time to other processes on a shared machine (it still sees their cache and memory traffic).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_CLOCK = [time.perf_counter]


def _block(model, x, y, batch_size, callbacks) -> float:
    began = _CLOCK[0]()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)
    return _CLOCK[0]() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist1d_mlp", choices=sorted(SHAPES))
    parser.add_argument("--blocks", type=int, default=9, help="timed blocks per model")
    parser.add_argument("--delta-t", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    parser.add_argument("--pairs", type=int, default=20, help="rounds of the paired comparisons")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS), help="wall or process CPU time")
    args = parser.parse_args()
    _CLOCK[0] = CLOCKS[args.clock]

    rng = np.random.default_rng(0)
    samples = args.delta_t * args.batch_size
    x = rng.normal(size=(samples, SHAPES[args.model][0])).astype("float32")
    y = rng.integers(0, 10, size=samples)

    # t_end far away: every block ends with an update at the full drop fraction.
    far = 10**9
    runs = {
        "static": (_model(args.model, args.sparsity, args.steps_per_execution, args.jit_compile), []),
        "hook": (
            _model(args.model, args.sparsity, args.steps_per_execution, args.jit_compile),
            [_BatchHook()],
        ),
        "set": (
            _model(args.model, args.sparsity, args.steps_per_execution, args.jit_compile),
            [DynamicSparseTraining("set", delta_t=args.delta_t, t_end=far)],
        ),
        "rigl": (
            _model(args.model, args.sparsity, args.steps_per_execution, args.jit_compile),
            [DynamicSparseTraining("rigl", delta_t=args.delta_t, t_end=far)],
        ),
        "rigl_drawn": (
            _model(args.model, args.sparsity, args.steps_per_execution, args.jit_compile),
            [
                DynamicSparseTraining(
                    "rigl",
                    data=(x, y),
                    gradient="drawn_batch",
                    batch_size=args.batch_size,
                    delta_t=args.delta_t,
                    t_end=far,
                )
            ],
        ),
        "rigl_idle": (
            _model(args.model, args.sparsity, args.steps_per_execution, args.jit_compile),
            [DynamicSparseTraining("rigl", delta_t=args.delta_t, begin_step=far - args.delta_t, t_end=far)],
        ),
    }
    rewiring = ("set", "rigl", "rigl_drawn")
    for model, callbacks in runs.values():  # warm-up: tracing, first update
        _block(model, x, y, args.batch_size, callbacks)
    times = {name: [] for name in runs}
    for _ in range(args.blocks):
        for name, (model, callbacks) in runs.items():
            times[name].append(_block(model, x, y, args.batch_size, callbacks))
            # The history restarts with each fit(): one block, one update.
            if name in rewiring:
                assert len(callbacks[0].history) == 1 and callbacks[0].history[0]["grown"] > 0
            elif name == "rigl_idle":
                assert callbacks[0].history == []
    for name in rewiring:
        assert tfl.sparsity_report(runs[name][0]).sparsity > args.sparsity - 0.001

    # The update alone (the captured-gradient RigL needs fit() to capture one, so it is not timed here).
    update_times = {}
    for name in ("set", "rigl_drawn"):
        model, (callback,) = runs[name]
        step = int(model.optimizer.iterations.numpy())
        samples_s = []
        for i in range(args.blocks):
            began = time.perf_counter()
            callback.update(step + i)
            samples_s.append(time.perf_counter() - began)
        update_times[name] = statistics.median(samples_s)

    weights = tfl.sparsity_report(runs["static"][0]).total
    print(
        f"{args.model} ({weights} prunable weights, {args.sparsity:.0%} sparse, ERK), batch {args.batch_size}, "
        f"delta_t={args.delta_t}, steps_per_execution={args.steps_per_execution}, "
        f"jit_compile={args.jit_compile}, clock={args.clock}; {args.blocks} blocks of "
        f"{args.delta_t} steps each, median (and minimum, the least disturbed by other load)"
    )
    static, static_min = statistics.median(times["static"]), min(times["static"])
    print(
        f"  static sparse : {static:.3f} s per block ({1000 * static / args.delta_t:.2f} ms/step); "
        f"min {static_min:.3f} s"
    )
    for name in ("hook", "set", "rigl", "rigl_drawn", "rigl_idle"):
        median, least = statistics.median(times[name]), min(times[name])
        line = (
            f"  {name:<13} : {median:.3f} s per block, {median / static:.3f}x static; "
            f"min {least:.3f} s, {least / static_min:.3f}x static min"
        )
        if name in update_times:
            line += (
                f"; one update alone {1000 * update_times[name]:.1f} ms "
                f"= {100 * update_times[name] / static_min:.1f}% of a block"
            )
        print(line)
    # Paired: each round times both models back to back (alternating which goes first), so that
    # slow drifts of the shared machine cancel in the per-round ratio.
    for slow, fast in (("rigl_idle", "static"), ("rigl_idle", "hook"), ("rigl", "rigl_drawn")):
        ratios = []
        for round_ in range(args.pairs):
            order = (slow, fast) if round_ % 2 else (fast, slow)
            measured = {name: _block(runs[name][0], x, y, args.batch_size, runs[name][1]) for name in order}
            ratios.append(measured[slow] / measured[fast])
        quartiles = statistics.quantiles(ratios, n=4)
        print(
            f"  paired {slow}/{fast}: median ratio {statistics.median(ratios):.3f} "
            f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}, {args.pairs} rounds)"
        )
    rigl, drawn = statistics.median(times["rigl"]), statistics.median(times["rigl_drawn"])
    idle, hook = statistics.median(times["rigl_idle"]), statistics.median(times["hook"])
    print(
        f"  ratios        : rigl (train batch) / rigl_drawn {rigl / drawn:.3f}; "
        f"rigl_idle / hook {idle / hook:.3f} (the capture hooks on non-update steps)"
    )


if __name__ == "__main__":
    main()
