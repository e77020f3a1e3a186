"""Served speed and size of tickets against their dense model: TFLite and SavedModel, batch 1 and 64.

One run builds a case's dense model and its tickets, exports each as a
SavedModel (`tfl.export_saved_model`) and as TensorFlow Lite
(`tfl.export_tflite`, sparse storage), and measures:

- latency at batch 1 and batch 64: the TFLite interpreter
  (`tf.lite.Interpreter(num_threads=1)`) and the SavedModel's
  `serving_default` loaded with `tf.saved_model.load` in this process
  (TensorFlow limited to `--threads` threads, 1 by default); medians of
  interleaved calls (dense and tickets alternate, in reversed order each
  repeat, so machine noise hits all alike); each runtime timed on its own;
- file size, raw and gzip'ed (a `.tar.gz` for a SavedModel);
- parameters: all, and those not zero;

checks that every export computes what its Keras model does and that the
tickets' masks held (pruned weights zero, sparsity as asked), and prints
`RATIO` lines last: `RATIO <ticket> <metric> <ticket / dense>`, with the
case's target and `ok` / `MISSED` where it has one.

    PYTHONPATH=$PWD python benchmarks/serving.py --case mlp_1x4 [--quick] [--repeats 200]
    PYTHONPATH=$PWD python benchmarks/serving.py --case all --quick   # every case, one process

Cases (`CASES`; a case is a function returning the dense model, the tickets,
the inputs and the targets, so new ones are one entry):

- `mlp_1x4`: 4 x Dense(2048) on 2048 inputs (16.8M weights, 67 MB), tickets
  pruned layer by layer in whole 1x4 blocks (`structure="1x4"`) to 75% and
  90%. Targets (issue #23): TFLite latency at batch 1 <= 0.6x dense at 75%
  and <= 0.2x at 90%; TFLite file <= 0.35x and <= 0.15x. TFLite's
  FULLY_CONNECTED runs its 1x4 block-sparse kernel on these weights (see
  `tfl.tflite_sparsity_report`); a SavedModel runs them dense.
- `mobilenetv2_channels`: keras.applications MobileNetV2 (alpha 1.0,
  224x224, weights=None); the ticket has half of each channel group pruned
  (`tfl.prune(model, target_sparsity=0.5, structure="channels",
  scope="layer")`) and removed by `tfl.shrink`. Targets: SavedModel and
  TFLite latency at batch 1 <= 0.6x dense, parameters <= 0.5x; the shrunk
  model's outputs equal the masked model's.
- `bert_heads`: keras_hub `BertBackbone` (4 layers, hidden 512, 8 heads,
  intermediate 2048, random init), sequence length 128; the ticket has half
  the heads of every block (`structure="heads"`) and half its feed-forward
  units (`structure="channels"`) removed by `tfl.shrink`. Target: latency at
  batch 1 <= 0.65x dense (SavedModel and TFLite).

In the shrunk cases the ticket is the shrunk model (no masks) and dense is
the unpruned model. `--quick` shrinks every case (Dense(256); MobileNetV2
alpha 0.35 at 32x32; a 2-layer BERT of width 64 at length 16; fewer
repeats) to check the script end to end in seconds; its targets are not
expected to hold.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_lottery as tfl  # noqa: E402
from tf_lottery.export.saved_model import artifact_size, export_saved_model  # noqa: E402
from tf_lottery.export.tflite import export_tflite  # noqa: E402

BATCHES = (1, 64)


@dataclasses.dataclass
class Built:
    """What a case hands the benchmark.

    Attributes:
        description: One line for the header.
        models: `{"dense": model, "<ticket name>": model, ...}`, "dense" first.
        make_inputs: `make_inputs(batch, rng) -> {input name: array}`, the
            names as the exports' `serving_default` signature takes them.
        targets: `{(ticket name, metric): largest ticket / dense ratio}`.
        sparsity: `{ticket name: sparsity its masks must have}` (masked tickets only).
        input_names: Passed to the exports (`None`: the model's own).
        masked: `{ticket name: masked model}` for shrunk tickets: the ticket's
            outputs must equal the masked model's (<= 1e-5, relative).
        repeats: Timed calls per model at batch 1 (`--repeats` overrides;
            batch 64 takes an eighth, at least 3).
    """

    description: str
    models: dict
    make_inputs: Callable
    targets: dict = dataclasses.field(default_factory=dict)
    sparsity: dict = dataclasses.field(default_factory=dict)
    input_names: list | None = None
    masked: dict = dataclasses.field(default_factory=dict)
    repeats: int = 200


def mlp_1x4(args) -> Built:
    width = 256 if args.quick else 2048

    def mlp() -> keras.Model:
        # A seed per layer: equal kernels would be stored once (TFLite shares identical buffers).
        init = [keras.initializers.GlorotNormal(seed=i) for i in range(4)]
        layers = [keras.Input((width,))]
        layers += [keras.layers.Dense(width, activation="relu", kernel_initializer=init[i]) for i in range(3)]
        layers.append(keras.layers.Dense(width, kernel_initializer=init[3], name="output"))
        return keras.Sequential(layers)

    keras.utils.set_random_seed(0)
    models = {"dense": mlp()}
    for sparsity in (0.75, 0.9):
        ticket = tfl.prunable(mlp())
        tfl.prune(ticket, target_sparsity=sparsity, scope="layer", structure="1x4")
        models[f"1x4 {sparsity:.0%}"] = ticket
    return Built(
        description=f"4 x Dense({width}) on {width} inputs, tickets in 1x4 blocks (layer-wise)",
        models=models,
        make_inputs=lambda batch, rng: {"inputs": rng.normal(size=(batch, width)).astype("float32")},
        targets={
            ("1x4 75%", "tflite_latency_b1"): 0.6,
            ("1x4 90%", "tflite_latency_b1"): 0.2,
            ("1x4 75%", "tflite_file_raw"): 0.35,
            ("1x4 90%", "tflite_file_raw"): 0.15,
        },
        sparsity={"1x4 75%": 0.75, "1x4 90%": 0.9},
    )


def mobilenetv2_channels(args) -> Built:
    size, alpha = (32, 0.35) if args.quick else (224, 1.0)
    keras.utils.set_random_seed(0)
    dense = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, weights=None, classifier_activation=None
    )
    masked = tfl.prunable(dense)  # a wrapped copy: `dense` stays unpruned
    tfl.prune(masked, target_sparsity=0.5, structure="channels", scope="layer")
    return Built(
        description=(
            f"keras.applications MobileNetV2 alpha {alpha}, {size}x{size}, weights=None; ticket: half of "
            "each channel group pruned (structure='channels', layer-wise), then tfl.shrink"
        ),
        models={"dense": dense, "shrunk": tfl.shrink(masked)},
        make_inputs=lambda batch, rng: {"pixels": rng.normal(size=(batch, size, size, 3)).astype("float32")},
        targets={
            ("shrunk", "savedmodel_latency_b1"): 0.6,
            ("shrunk", "tflite_latency_b1"): 0.6,
            ("shrunk", "params"): 0.5,
        },
        input_names=["pixels"],
        masked={"shrunk": masked},
        repeats=50,
    )


def bert_heads(args) -> Built:
    import keras_hub  # only this case needs it

    config = (
        dict(vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128)
        if args.quick
        else dict(vocabulary_size=30522, num_layers=4, num_heads=8, hidden_dim=512, intermediate_dim=2048)
    )
    length = 16 if args.quick else 128
    keras.utils.set_random_seed(0)
    dense = keras_hub.models.BertBackbone(**config, max_sequence_length=512)
    # `prunable` wraps a keras_hub model in place: the ticket starts from a copy.
    masked = keras_hub.models.BertBackbone(**config, max_sequence_length=512)
    masked.set_weights(dense.get_weights())
    masked = tfl.prunable(masked)
    tfl.prune(masked, target_sparsity=0.5, structure="heads", scope="layer")
    tfl.prune(masked, target_sparsity=0.5, structure="channels", scope="layer")

    def tokens(batch, rng):
        return {
            "padding_mask": np.ones((batch, length), "int32"),
            "segment_ids": np.zeros((batch, length), "int32"),
            "token_ids": rng.integers(1, config["vocabulary_size"], (batch, length)).astype("int32"),
        }

    return Built(
        description=(
            f"keras_hub BertBackbone {config['num_layers']} layers, hidden {config['hidden_dim']}, "
            f"{config['num_heads']} heads, intermediate {config['intermediate_dim']}, random init, "
            f"sequence length {length}; ticket: half the heads (structure='heads') and half the "
            "feed-forward units (structure='channels') pruned layer-wise, then tfl.shrink"
        ),
        models={"dense": dense, "shrunk": tfl.shrink(masked)},
        make_inputs=tokens,
        targets={("shrunk", "savedmodel_latency_b1"): 0.65, ("shrunk", "tflite_latency_b1"): 0.65},
        masked={"shrunk": masked},
        repeats=30,
    )


# Name -> case.
CASES: dict[str, Callable[[argparse.Namespace], Built]] = {
    "mlp_1x4": mlp_1x4,
    "mobilenetv2_channels": mobilenetv2_channels,
    "bert_heads": bert_heads,
}


def _interpreter(path: str):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_path=path, num_threads=1)
    return interpreter.get_signature_runner("serving_default")


def _latency_ms(calls: dict, repeats: int, warmup: int = 5) -> dict:
    """{name: median milliseconds per call}, the calls interleaved."""
    for call in calls.values():
        for _ in range(warmup):
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


def _first_output(result):
    """The first output by name (a dict's first key, sorted) as an array."""
    if isinstance(result, dict):
        result = result[sorted(result)[0]]
    elif isinstance(result, (list, tuple)):
        result = result[0]
    return keras.ops.convert_to_numpy(result)


def _equal(got, expected, tolerance: float) -> bool:
    scale = max(1.0, float(np.abs(expected).max()))
    return bool(np.abs(got - expected).max() <= tolerance * scale)


def _parameters(model) -> tuple[int, int]:
    values = [keras.ops.convert_to_numpy(w) for w in tfl.strip(model).weights]
    return sum(v.size for v in values), sum(int(np.count_nonzero(v)) for v in values)


def _masks_held(model, sparsity: float | None) -> bool:
    if sparsity is None:
        return True
    report = tfl.sparsity_report(model)
    wrappers = tfl.prune_wrappers(model)
    zero = all(
        not np.any(keras.ops.convert_to_numpy(w)[~m])
        for wr in wrappers
        for w, m in zip(wr.pruned_weights, wr.get_masks())
    )
    # Exact counts in whole blocks: each layer rounds to a whole block (at most 4 weights here).
    return zero and abs(report.sparsity - sparsity) * report.total <= 4 * len(wrappers)


def run_case(case: str, args: argparse.Namespace) -> list[str]:
    """Measures one case and prints its tables and ratios; returns the models that broke."""
    built = CASES[case](args)
    repeats = args.repeats or (20 if args.quick else built.repeats)
    names = list(built.models)
    print(f"case {case}: {built.description}")
    print(f"TFLite: 1 thread; SavedModel: {args.threads} thread(s); medians of {repeats} interleaved calls")
    rows = {name: {} for name in names}
    with tempfile.TemporaryDirectory(prefix="serving_") as work:
        saved, lite, reports = {}, {}, {}
        for index, (name, model) in enumerate(built.models.items()):
            saved[name] = export_saved_model(
                model, os.path.join(work, f"m{index}"), input_names=built.input_names
            )
            lite[name] = export_tflite(
                model, os.path.join(work, f"m{index}.tflite"), input_names=built.input_names, verbose=0
            )
            reports[name] = tfl.tflite_sparsity_report(lite[name])
            for kind, path in (("savedmodel", saved[name]), ("tflite", lite[name])):
                size = artifact_size(path)
                rows[name][f"{kind}_file_raw"], rows[name][f"{kind}_file_gzip"] = size.raw, size.gzip
            rows[name]["params"], rows[name]["params_nonzero"] = _parameters(model)

        rng = np.random.default_rng(0)
        held = dict.fromkeys(names, True)
        for batch in BATCHES:
            inputs = built.make_inputs(batch, rng)
            tensors = {k: tf.constant(v) for k, v in inputs.items()}
            serving = {n: tf.saved_model.load(p).signatures["serving_default"] for n, p in saved.items()}
            runners = {n: _interpreter(p) for n, p in lite.items()}
            for name, model in built.models.items():  # every export computes what its model does
                expected = _first_output(model(inputs if len(inputs) > 1 else tensors[next(iter(inputs))]))
                outputs = [_first_output(serving[name](**tensors)), _first_output(runners[name](**inputs))]
                if name in built.masked:  # a shrunk ticket computes what its masked model does
                    masked = built.masked[name]
                    held[name] = held[name] and _equal(
                        expected,
                        _first_output(masked(inputs if len(inputs) > 1 else tensors[next(iter(inputs))])),
                        1e-5,
                    )
                held[name] = held[name] and all(_equal(got, expected, 1e-4) for got in outputs)
            count = repeats if batch == 1 else max(3, repeats // 8)
            warmup = 5 if batch == 1 else 1
            # Each runtime timed on its own: TFLite's and TensorFlow's thread pools disturb each other.
            tflite_ms = _latency_ms(
                {n: (lambda r=r, x=inputs: r(**x)) for n, r in runners.items()}, count, warmup
            )
            saved_ms = _latency_ms(
                {n: (lambda f=f, t=tensors: f(**t)) for n, f in serving.items()}, count, warmup
            )
            for name in names:
                rows[name][f"tflite_latency_b{batch}"] = tflite_ms[name]
                rows[name][f"savedmodel_latency_b{batch}"] = saved_ms[name]

    metrics = list(rows["dense"])
    width = max(len(m) for m in metrics) + 2
    print(f"\n{'':<{width}}" + "".join(f"{n:>16}" for n in names))
    for metric in metrics:
        unit = " ms" if "latency" in metric else ""
        cells = "".join(
            f"{rows[n][metric]:>16.3f}" if "latency" in metric else f"{rows[n][metric]:>16,}" for n in names
        )
        print(f"{metric + unit:<{width}}{cells}")
    print("\nTFLite runtime per ticket (tfl.tflite_sparsity_report):")
    for name in names:
        report = reports[name]
        pruned = [w for w in report.weights if w.pruned]
        print(f"  {name}: {len(report.fast)} of {len(pruned)} pruned weights run a sparse kernel")
    broken = []
    for name in names:
        ok = held[name] and _masks_held(built.models[name], built.sparsity.get(name))
        print(
            f"  {name}: outputs equal: {'yes' if held[name] else 'NO'}, masks held: {'yes' if ok else 'NO'}"
        )
        broken += [] if ok else [f"{case} {name}"]
    missed = []
    print("\nticket / dense ratios (other agents may load the CPU while this runs):")
    for name in names[1:]:
        for metric in metrics:
            ratio = rows[name][metric] / rows["dense"][metric]
            target = built.targets.get((name, metric))
            verdict = (
                "" if target is None else f"  target <= {target}: {'ok' if ratio <= target else 'MISSED'}"
            )
            if target is not None and ratio > target:
                missed.append(f"{name} {metric}")
            print(f"RATIO {name.replace(' ', '_')} {metric} {ratio:.3f}{verdict}")
    print(f"targets missed: {', '.join(missed) or 'none'}")
    return broken


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case",
        nargs="+",
        choices=[*CASES, "all"],
        default=["mlp_1x4"],
        help="one or more cases, run one after the other; `all` runs every case",
    )
    parser.add_argument("--quick", action="store_true", help="small models and few repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per model at batch 1")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads for the SavedModel")
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    cases = list(CASES) if "all" in args.case else list(dict.fromkeys(args.case))
    broken = []
    for index, case in enumerate(cases):
        if index:
            print()
            keras.backend.clear_session()
        broken += run_case(case, args)
    if broken:
        sys.exit(f"outputs differ or masks did not hold for: {broken}")


if __name__ == "__main__":
    main()
