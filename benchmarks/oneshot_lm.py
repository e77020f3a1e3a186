"""The one-shot pruning papers' perplexity table, in kind, on a small GPT-2 trained here.

What it reproduces: the ordering of Sun et al. 2023 (Wanda, arXiv:2306.11695;
numbers from the locuslab/wanda README) and Frantar & Alistarh 2023 (SparseGPT,
arXiv:2301.00774) for LLaMA-2-7B on WikiText: dense 5.12; 50% unstructured:
magnitude 14.89, SparseGPT 6.51, Wanda 6.42; 2:4: magnitude 54.59, SparseGPT
10.17, Wanda 11.02. That is, SparseGPT ~ Wanda << magnitude, and 2:4 costs
more than 50% unstructured.

Corpus: CPython's `pydoc_data.topics` (the text of `help("topic")`, about
465k characters of English technical prose, shipped with every Python), split
by topic, not by line: every fifth topic in sorted order (starting with the
third) is held out, so no paragraph of the held-out text is seen in
training. Tokens are UTF-8 bytes (vocabulary 256): nothing to download or fit.
Perplexity is per byte.

Model: keras_hub's `GPT2CausalLM` (`GPT2Backbone`: 4 layers, 4 heads, hidden
128, intermediate 512, context 128, no dropout; 0.84M parameters), trained
from scratch with AdamW (warm-up, then cosine decay) on random 128-byte
windows of the training topics. The trained weights are cached
(`--cache`, default `~/.cache/tf_lottery/oneshot_lm`), keyed by the model,
training settings, seed and corpus, so a rerun skips training.

Pruning: the transformer blocks' projections (attention query / key / value /
output, both feed-forward kernels; the token embedding, which is also the
tied output layer, is excluded, as in the papers) at 50% unstructured and 2:4,
by `tfl.oneshot.magnitude`, `wanda` and `sparsegpt`, with 128 calibration
windows from the training topics. Perplexity: every third 128-byte window of
the held-out topics (281 windows, 36k bytes). Then Wanda's and SparseGPT's
2:4 models are fine-tuned 100 steps of 8 windows (`model.fit` on the prunable
model: the wrappers hold the masks, which is checked), and the dense model
gets the same fine-tuning as a control, since a briefly trained model also
improves with more training. A seed sets the initialisation, the order of the
training windows, the calibration sample and the fine-tuning windows.

    PYTHONPATH=$PWD python benchmarks/oneshot_lm.py [--quick] [--seeds 0 1 2]
        [--cache DIR] [--train-steps 320] [--finetune-steps 100] [--json FILE]
    PYTHONPATH=$PWD python benchmarks/oneshot_lm.py --report a.json b.json   # seeds run apart

Runtime: training takes about 4 min of CPU time per seed on the 2-core machine;
shared with other work (load average 8 to 12) a whole seed took 40 to 55 min
of wall time (docs/RESULTS.md). `--quick` (a tiny model,
1 seed, a few steps) checks the plumbing only: 85 s at load 4.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_lottery as tfl  # noqa: E402

# locuslab/wanda README, LLaMA-2-7B, WikiText perplexity.
PAPER = {
    ("dense", None): 5.12,
    ("magnitude", "50%"): 14.89,
    ("sparsegpt", "50%"): 6.51,
    ("wanda", "50%"): 6.42,
    ("magnitude", "2:4"): 54.59,
    ("sparsegpt", "2:4"): 10.17,
    ("wanda", "2:4"): 11.02,
}
METHODS = ("magnitude", "wanda", "sparsegpt")
STRUCTURES = {"50%": None, "2:4": "2:4"}
HELD_OUT_EVERY, HELD_OUT_AT = 5, 2


@dataclasses.dataclass(frozen=True)
class Settings:
    num_layers: int = 4
    num_heads: int = 4
    hidden_dim: int = 128
    intermediate_dim: int = 512
    sequence_length: int = 128
    train_steps: int = 320
    train_batch: int = 16
    learning_rate: float = 3e-3
    calibration: int = 128
    finetune_steps: int = 100
    finetune_batch: int = 8
    finetune_learning_rate: float = 3e-4
    finetune_methods: tuple = ("wanda", "sparsegpt")  # their 2:4 models, and the dense one as a control
    held_out_every: int = 3  # every third window of the held-out topics: 281 windows, 36k bytes
    jit_compile: bool = True  # XLA: 2x faster steps here, but about 40 s to compile each model

    def model_key(self, seed: int, corpus_digest: str) -> str:
        fields = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k
            in (
                "num_layers",
                "num_heads",
                "hidden_dim",
                "intermediate_dim",
                "sequence_length",
                "train_steps",
                "train_batch",
                "learning_rate",
            )
        }
        text = json.dumps({**fields, "seed": seed, "corpus": corpus_digest}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


QUICK = Settings(
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    sequence_length=32,
    train_steps=30,
    train_batch=16,
    calibration=16,
    finetune_steps=5,
    finetune_batch=8,
    held_out_every=100,
    jit_compile=False,
)


TRUE_SEQUENTIAL = False  # --true-sequential


def corpus() -> tuple[bytes, bytes, list[str]]:
    """(train bytes, held-out bytes, held-out topic names) from `pydoc_data.topics`, split by topic."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    held = [k for i, k in enumerate(keys) if i % HELD_OUT_EVERY == HELD_OUT_AT]
    train = [k for k in keys if k not in held]
    join = lambda names: "\n\n".join(topics[k].strip() for k in names).encode("utf-8")  # noqa: E731
    return join(train), join(held), held


def train_windows(text: np.ndarray, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random windows of `length + 1` bytes: inputs and next-byte targets."""
    starts = rng.integers(0, len(text) - length - 1, count)
    return np.stack([text[s : s + length + 1] for s in starts]).astype("int32")


def held_out_windows(text: np.ndarray, length: int, every: int) -> np.ndarray:
    """Every `every`-th non-overlapping window of `length + 1` bytes (spread over all held-out topics)."""
    count = (len(text) - 1) // length
    return np.stack([text[i * length : i * length + length + 1] for i in range(0, count, every)]).astype(
        "int32"
    )


def count_baselines(train: np.ndarray, windows: np.ndarray) -> tuple[float, float]:
    """Held-out perplexity of byte unigram and bigram counts of the training text (add-one smoothed)."""
    targets, previous = windows[:, 1:].ravel(), windows[:, :-1].ravel()
    unigram = np.bincount(train, minlength=256) + 1.0
    bigram = np.ones((256, 256))
    np.add.at(bigram, (train[:-1], train[1:]), 1)
    unigram, bigram = unigram / unigram.sum(), bigram / bigram.sum(axis=1, keepdims=True)
    return float(np.exp(-np.log(unigram[targets]).mean())), float(
        np.exp(-np.log(bigram[previous, targets]).mean())
    )


def inputs(windows: np.ndarray) -> dict:
    x = windows[:, :-1]
    return {"token_ids": x, "padding_mask": np.ones_like(x)}


def build(settings: Settings, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=256,
        num_layers=settings.num_layers,
        num_heads=settings.num_heads,
        hidden_dim=settings.hidden_dim,
        intermediate_dim=settings.intermediate_dim,
        max_sequence_length=settings.sequence_length,
        dropout=0.0,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def compile_for_training(model: keras.Model, learning_rate, steps: int, jit_compile: bool) -> None:
    warmup = max(1, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - warmup, alpha=0.1, warmup_target=learning_rate, warmup_steps=warmup
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )


def fit(
    model: keras.Model, windows: np.ndarray, batch: int, learning_rate: float, jit_compile: bool
) -> float:
    """Trains on `windows` in order, one pass; returns the seconds taken."""
    compile_for_training(model, learning_rate, len(windows) // batch, jit_compile)
    start = time.perf_counter()
    model.fit(inputs(windows), windows[:, 1:], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return time.perf_counter() - start


def perplexity(model: keras.Model, windows: np.ndarray, batch: int = 64) -> float:
    """exp(mean negative log-likelihood per byte) of every next byte of `windows`."""
    forward = tf.function(lambda x: model(x, training=False))
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        chunk = windows[i : i + batch]
        logits = forward(inputs(chunk))
        nll = keras.losses.sparse_categorical_crossentropy(chunk[:, 1:], logits, from_logits=True)
        total += float(tf.reduce_sum(tf.cast(nll, "float64")))
        count += int(np.prod(nll.shape))
    return math.exp(total / count)


def kernels_alive(model: keras.Model) -> dict:
    """{weight path: alive mask} of every pruned projection, read from the kernels themselves."""
    return {w.path: keras.ops.convert_to_numpy(w) != 0 for w in model.weights if w.path.endswith("kernel")}


def trained_dense(settings: Settings, seed: int, train: np.ndarray, cache: str, digest: str, log) -> str:
    """The path of the dense model's weights for `seed`, training it first when not cached."""
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"gpt2_bytes_{settings.model_key(seed, digest)}.weights.h5")
    if os.path.exists(path):
        log(f"seed {seed}: dense weights from the cache ({path})")
        return path
    model = build(settings, seed)
    rng = np.random.default_rng([seed, 0])
    windows = train_windows(train, settings.train_steps * settings.train_batch, settings.sequence_length, rng)
    seconds = fit(model, windows, settings.train_batch, settings.learning_rate, settings.jit_compile)
    model.save_weights(path + ".tmp.weights.h5")
    os.replace(path + ".tmp.weights.h5", path)
    log(f"seed {seed}: trained the dense model, {settings.train_steps} steps in {seconds:.0f} s ({path})")
    return path


def fresh(settings: Settings, seed: int, weights: str) -> keras.Model:
    keras.backend.clear_session()
    model = build(settings, seed)
    model.load_weights(weights)
    return model


def run_seed(settings: Settings, seed: int, train, held_out, cache, digest, log) -> dict:
    weights = trained_dense(settings, seed, train, cache, digest, log)
    rng = np.random.default_rng([seed, 1])
    calibration = inputs(train_windows(train, settings.calibration, settings.sequence_length, rng))
    tune = train_windows(
        train, settings.finetune_steps * settings.finetune_batch, settings.sequence_length, rng
    )
    result = {"seed": seed, "ppl": {}, "seconds": {}, "sparsity": {}, "finetuned": {}, "masks_held": {}}

    dense = fresh(settings, seed, weights)
    result["ppl"]["dense"] = perplexity(dense, held_out)
    log(f"seed {seed}: dense perplexity {result['ppl']['dense']:.3f}")
    fit(dense, tune, settings.finetune_batch, settings.finetune_learning_rate, settings.jit_compile)
    result["finetuned"]["dense"] = perplexity(dense, held_out)
    log(f"seed {seed}: dense, fine-tuned as a control: {result['finetuned']['dense']:.3f}")

    for label, structure in STRUCTURES.items():
        for method in METHODS:
            name = f"{method} {label}"
            model = tfl.prunable(fresh(settings, seed, weights), exclude=["token_embedding"])
            start = time.perf_counter()
            if method == "magnitude":
                tfl.oneshot.magnitude(model, 0.5, structure=structure)
            else:
                getattr(tfl.oneshot, method)(
                    model,
                    calibration,
                    0.5,
                    structure=structure,
                    batch_size=32,
                    true_sequential=TRUE_SEQUENTIAL,
                )
            result["seconds"][name] = time.perf_counter() - start
            result["ppl"][name] = perplexity(model, held_out)
            alive = kernels_alive(model)
            result["sparsity"][name] = 1 - sum(a.sum() for a in alive.values()) / sum(
                a.size for a in alive.values()
            )
            log(
                f"seed {seed}: {name}: perplexity {result['ppl'][name]:.3f} ({result['seconds'][name]:.1f} s)"
            )
            if structure is None or method not in settings.finetune_methods:
                continue
            fit(model, tune, settings.finetune_batch, settings.finetune_learning_rate, settings.jit_compile)
            after = kernels_alive(model)
            # Every kernel zero after pruning is still zero after fine-tuning.
            result["masks_held"][name] = all(not np.any(after[p] & ~alive[p]) for p in alive)
            result["finetuned"][name] = perplexity(model, held_out)
            log(f"seed {seed}: {name}, fine-tuned: {result['finetuned'][name]:.3f}")
    return result


def _mean_std(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _increase(results: list[dict], name: str, column: str, reference: str) -> str:
    """Percent above the reference model of the same seed (seeds differ more than methods do)."""
    values = [100 * (r[column][name] / r[column][reference] - 1) for r in results]
    return _mean_std(values, digits=2)


def table(results: list[dict]) -> str:
    rows = [
        "| model | perplexity (per byte) | vs dense (%) | after fine-tuning | vs dense fine-tuned (%) "
        "| LLaMA-2-7B, WikiText (paper) |",
        "|---|---|---|---|---|---|",
    ]
    dense = [r["ppl"]["dense"] for r in results]
    tuned = [r["finetuned"]["dense"] for r in results]
    rows.append(
        f"| dense | {_mean_std(dense)} | | {_mean_std(tuned)} (control) | | {PAPER[('dense', None)]} |"
    )
    for label in STRUCTURES:
        for method in METHODS:
            name = f"{method} {label}"
            ppl = _mean_std([r["ppl"][name] for r in results])
            up = _increase(results, name, "ppl", "dense")
            if all(name in r["finetuned"] for r in results):
                after = _mean_std([r["finetuned"][name] for r in results])
                after_up = _increase(results, name, "finetuned", "dense")
            else:
                after, after_up = "-", "-"
            rows.append(
                f"| {method}, {label} | {ppl} | +{up} | {after} | {'+' if after != '-' else ''}{after_up} "
                f"| {PAPER[(method, label)]} |"
            )
    return "\n".join(rows).replace("+-", "-")


def orderings(results: list[dict]) -> list[str]:
    """The papers' orderings, each with the seeds in which it holds."""

    def held(check) -> str:
        count = sum(bool(check(r)) for r in results)
        return f"{count}/{len(results)} seeds"

    lines = []
    for label in STRUCTURES:
        p = lambda r, m, label=label: r["ppl"][f"{m} {label}"]  # noqa: E731
        lines.append(
            f"{label}: SparseGPT < magnitude: {held(lambda r, p=p: p(r, 'sparsegpt') < p(r, 'magnitude'))}"
        )
        lines.append(f"{label}: Wanda < magnitude: {held(lambda r, p=p: p(r, 'wanda') < p(r, 'magnitude'))}")
        lines.append(f"{label}: SparseGPT < Wanda: {held(lambda r, p=p: p(r, 'sparsegpt') < p(r, 'wanda'))}")
    for method in METHODS:
        lines.append(
            f"{method}: 2:4 worse than 50%: "
            f"{held(lambda r, m=method: r['ppl'][f'{m} 2:4'] > r['ppl'][f'{m} 50%'])}"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a tiny model, a few steps, 1 seed: plumbing only"
    )
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument(
        "--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "tf_lottery", "oneshot_lm")
    )
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--finetune-steps", type=int)
    parser.add_argument("--json", help="write every seed's numbers here")
    parser.add_argument(
        "--true-sequential",
        action="store_true",
        help="calibrate each layer of a block on the block with its earlier layers pruned "
        "(`true_sequential=True`; the tables in docs/RESULTS.md up to 2026-12-07 were measured so)",
    )
    parser.add_argument(
        "--report",
        nargs="+",
        metavar="JSON",
        help="print the table of runs written by --json (seeds run apart)",
    )
    args = parser.parse_args(argv)
    if args.report:
        runs = [json.load(open(path)) for path in args.report]
        if any(run["settings"] != runs[0]["settings"] for run in runs):
            raise ValueError(
                f"Invalid value for argument `--report`: the runs' settings differ. Received: {args.report}"
            )
        report([r for run in runs for r in run["results"]])
        return
    global TRUE_SEQUENTIAL
    TRUE_SEQUENTIAL = args.true_sequential
    settings = QUICK if args.quick else Settings()
    if args.train_steps:
        settings = dataclasses.replace(settings, train_steps=args.train_steps)
    if args.finetune_steps:
        settings = dataclasses.replace(settings, finetune_steps=args.finetune_steps)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {message}", flush=True)

    train_bytes, held_bytes, held_topics = corpus()
    digest = hashlib.sha256(train_bytes + b"\0" + held_bytes).hexdigest()[:12]
    train = np.frombuffer(train_bytes, np.uint8)
    held_out = held_out_windows(
        np.frombuffer(held_bytes, np.uint8), settings.sequence_length, settings.held_out_every
    )
    params = build(settings, 0).count_params()
    unigram, bigram = count_baselines(train, held_out)
    print(
        f"corpus: pydoc_data.topics, {len(train_bytes):,} train bytes, {len(held_bytes):,} held-out bytes "
        f"({len(held_topics)} topics, {len(held_out)} windows of {settings.sequence_length}), sha256 {digest}; "
        f"byte counts of the train split give held-out perplexity {unigram:.2f} (unigram), {bigram:.2f} (bigram)"
    )
    print(
        f"model: GPT2CausalLM, {settings.num_layers} layers, {settings.num_heads} heads, hidden {settings.hidden_dim}, "
        f"intermediate {settings.intermediate_dim}, vocabulary 256 (bytes), {params:,} parameters; trained "
        f"{settings.train_steps} steps x {settings.train_batch} windows; {settings.calibration} calibration windows; "
        f"fine-tuning {settings.finetune_steps} steps x {settings.finetune_batch}; seeds {seeds}; {os.cpu_count()} CPU cores"
    )
    results = []
    for seed in seeds:
        results.append(run_seed(settings, seed, train, held_out, args.cache, digest, log))
        if args.json:  # after every seed, so that a run cut short keeps the seeds it finished
            with open(args.json, "w") as f:
                json.dump({"settings": dataclasses.asdict(settings), "results": results}, f, indent=1)
    report(results)
    print(f"total: {time.perf_counter() - start:.0f} s")


def report(results: list[dict]) -> None:
    print()
    print(table(results))
    print()
    for line in orderings(results):
        print(line)
    held = all(all(r["masks_held"].values()) for r in results)
    seconds = {k: statistics.mean(r["seconds"][k] for r in results) for k in results[0]["seconds"]}
    print("pruning seconds (mean): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"masks held through fine-tuning: {'yes' if held else 'NO'}")


if __name__ == "__main__":
    main()
