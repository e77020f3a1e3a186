"""KD tickets and KD-rewinding (Ma et al. 2021) as IMP experiments.

Experiment kinds (`config.experiment`):

- `"kd_ticket"`: each IMP level prunes the network the previous level trained,
  rewinds it to initialisation and retrains it on the soft labels of the
  trained dense network (the KD ticket). Baseline arm: `"ticket"` (the same
  with hard labels only).
- `"kd_rewind"`: the same, rewound to `config.pruning.rewind_to` (an early
  epoch) instead of initialisation (KD-rewinding). Baseline arm: `"rewind"`.

`config.kd.arms` picks any of `ticket`, `rewind`, `kd_ticket`, `kd_rewind` to
run side by side; they share each seed's dense network (level 0, trained on
hard labels), which is the teacher, its initialisation and its rewind point.
Every arm runs its own IMP: the masks of level k come from the weights that
arm trained at level k-1.

With a deterministic pipeline (`dataset.augment=False`) the teacher's logits
are computed once and streamed with the data (`kd.cache_teacher_logits`);
with augmentation the teacher runs on every augmented batch.

    python -m tf_lottery.main --config=configs/kd_mnist1d_mlp.py --workdir=runs
"""

from __future__ import annotations

import copy
import fnmatch
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import ml_collections
import numpy as np

from tf_lottery.core.prunable import prunable
from tf_lottery.core.report import sparsity_report
from tf_lottery.core.strip import strip
from tf_lottery.distillation.distiller import KDDistiller
from tf_lottery.distillation.teacher_logits import array_batches, with_teacher_logits
from tf_lottery.experiments import registry
from tf_lottery.lottery.rewind import Snapshot, reset_for_retrain
from tf_lottery.pruning.pruner import prune
from tf_lottery.utils import atomic_io

KINDS = ("kd_ticket", "kd_rewind")
# arm -> (rewinds to the early point rather than initialisation, distils)
ARMS = {
    "ticket": (False, False),
    "rewind": (True, False),
    "kd_ticket": (False, True),
    "kd_rewind": (True, True),
}
DEFAULT_ARMS = {"kd_ticket": ("kd_ticket", "ticket"), "kd_rewind": ("kd_rewind", "rewind")}


def kd_defaults() -> ml_collections.ConfigDict:
    """`tf_lottery.experiments.schema.defaults()` plus the `kd` group."""
    from tf_lottery.experiments import schema

    config = schema.defaults()
    config.experiment = "kd_ticket"
    config.pruning.scope = "global"
    config.kd = ml_collections.ConfigDict()
    # Weight of the distillation term; the label cross-entropy gets 1 - weight.
    config.kd.weight = 0.9
    config.kd.temperature = 5.0
    # Comma-separated arms from ARMS; '' runs the kind's arm and its baseline.
    config.kd.arms = ""
    # Stream the teacher's logits with the data (only without augmentation).
    config.kd.cache_teacher_logits = True
    return config


def _fail(key: str, expected: str, value) -> None:
    raise ValueError(f"Invalid value for `config.{key}`: expected {expected}. Received: {key}={value!r}.")


def arms_of(config) -> tuple:
    """The arms `config` runs, in a fixed order."""
    names = [a.strip() for a in str(config.kd.arms).split(",") if a.strip()] or DEFAULT_ARMS[
        config.experiment
    ]
    for name in names:
        if name not in ARMS:
            _fail("kd.arms", f"comma-separated names from {tuple(ARMS)}", config.kd.arms)
    return tuple(a for a in ARMS if a in names)


def validate(config) -> None:
    """Checks the KD options, then every shared option with `schema.validate`."""
    from tf_lottery.experiments import schema

    if config.get("experiment") not in KINDS:
        _fail("experiment", f"one of {KINDS}", config.get("experiment"))
    if "kd" not in config:
        raise ValueError(
            "Missing config group `config.kd`: start the config from `kd_experiment.kd_defaults()`."
        )
    weight, temperature = config.kd.weight, config.kd.temperature
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        _fail("kd.weight", "a float in [0, 1]", weight)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        _fail("kd.temperature", "a float > 0", temperature)
    arms_of(config)
    shared = copy.deepcopy(config)
    with shared.unlocked():
        del shared["kd"]
        shared.experiment = "lottery"
    schema.validate(shared)


@dataclass(frozen=True)
class KDPlan:
    """What one replicate trains (all durations in epochs)."""

    arms: tuple
    levels: int
    pruning_rate: float
    scope: str
    layer_rates: dict
    epochs: int
    rewind_epoch: int
    batch_size: int
    kd_weight: float
    temperature: float
    cache_teacher_logits: bool
    exclude: tuple = ()


class _Accuracies(keras.callbacks.Callback):
    """Validation and test accuracy of `network` after every epoch."""

    def __init__(self, network, evaluate):
        super().__init__()
        self.network, self.evaluate, self.epochs = network, evaluate, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.evaluate(self.network))


def _arrays(dataset) -> tuple:
    """`(inputs, labels)` NumPy arrays of a finite `(x, y)` dataset."""
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def run_replicate(
    plan: KDPlan,
    data,
    model_fn: Callable[[], keras.Model],
    optimizer_fn: Callable[[], keras.optimizers.Optimizer],
    seed: int,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Dense network and teacher, then every arm's IMP levels, for one seed.

    Args:
        plan: KDPlan.
        data: A `tf_lottery.data` pipeline (`train_batches`, `eval_batches`,
            `steps_per_epoch`, `augment`).
        model_fn: Builds a fresh (unwrapped) model with logits out.
        optimizer_fn: Builds a fresh optimizer (its schedule counts steps).
        seed: int. Model initialisation and data order.
        log: Callable taking a str.

    Returns:
        One dict per trained network: `seed`, `arm` (`"dense"` for level 0),
        `level`, `sparsity`, `percent_remaining`, `final_test_accuracy`,
        `best_val_test_accuracy` (at the epoch of best validation accuracy,
        `None` without validation data), `final_train_accuracy` (`None` with
        augmentation), `seconds`.
    """
    keras.utils.set_random_seed(seed)
    steps = data.steps_per_epoch(plan.batch_size)
    splits = {s: data.eval_batches(s) for s in ("validation", "test")}
    splits = {s: _arrays(d) for s, d in splits.items() if d is not None}

    def accuracy(network, x, y) -> float:
        logits = [network(x[i : i + 1000], training=False) for i in range(0, len(x), 1000)]
        return float(np.mean(np.argmax(np.concatenate(logits), -1) == y))

    def evaluate(network) -> dict:
        return {split: accuracy(network, x, y) for split, (x, y) in splits.items()}

    cached = plan.cache_teacher_logits and not data.augment
    if not data.augment:
        x_train, y_train = _arrays(data.eval_batches("train"))

    def train(model, network, start: int, end: int, teacher=None) -> list:
        """Trains epochs [start, end); returns the per-epoch accuracies."""
        accuracies = _Accuracies(network, evaluate) if "validation" in splits else None
        callbacks = [accuracies] if accuracies else []
        if data.augment:  # the pipeline's own augmented batches, epoch by epoch
            for epoch in range(start, end):
                batches = data.train_batches(epoch, plan.batch_size, seed)
                model.fit(batches, callbacks=callbacks, shuffle=False, verbose=0)
        elif end > start:
            options = dict(batch_size=plan.batch_size, seed=seed, drop_remainder=True)
            if teacher is not None and cached:
                batches = with_teacher_logits(x_train, y_train, teacher, **options)
            else:
                batches = array_batches((x_train, y_train), **options)
            model.fit(batches, epochs=end - start, callbacks=callbacks, shuffle=False, verbose=0)
        return accuracies.epochs if accuracies else []

    def record(arm, level, network, began, per_epoch) -> dict:
        report = sparsity_report(network)
        final = evaluate(network)
        best = max(per_epoch, key=lambda a: a["validation"]) if per_epoch else None
        row = {
            "seed": seed,
            "arm": arm,
            "level": level,
            "sparsity": report.sparsity,
            "percent_remaining": report.percent_remaining,
            "final_test_accuracy": final["test"],
            "best_val_test_accuracy": best["test"] if best else None,
            "final_train_accuracy": None if data.augment else accuracy(network, x_train, y_train),
            "seconds": time.time() - began,
        }
        log(
            f"seed {seed} {arm:>9} level {level}: {row['percent_remaining']:5.1f}% remaining, "
            f"test accuracy {row['final_test_accuracy']:.4f} ({row['seconds']:.0f} s)"
        )
        return row

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    excluded = lambda layer: any(fnmatch.fnmatchcase(layer.name, p) for p in plan.exclude)
    dense = prunable(model_fn(), exclude=excluded if plan.exclude else None)
    dense.compile(optimizer=optimizer_fn(), loss=loss)
    dense.optimizer.build(dense.trainable_variables)
    initial = Snapshot.capture(dense, 0)
    began = time.time()
    per_epoch = train(dense, dense, 0, plan.rewind_epoch)
    early = Snapshot.capture(dense, plan.rewind_epoch * steps)
    per_epoch += train(dense, dense, plan.rewind_epoch, plan.epochs)
    rows = [record("dense", 0, dense, began, per_epoch)]
    teacher = strip(dense)
    teacher.trainable = False

    for arm in plan.arms:
        late, distils = ARMS[arm]
        point, start = (early, plan.rewind_epoch) if late else (initial, 0)
        student = prunable(dense)  # a copy holding the trained dense weights
        model = KDDistiller(teacher, student, plan.kd_weight, plan.temperature) if distils else student
        model.compile(optimizer=optimizer_fn(), loss=loss)
        model.optimizer.build(model.trainable_variables)
        for level in range(1, plan.levels + 1):
            began = time.time()
            prune(model, plan.pruning_rate, scope=plan.scope, layer_rates=plan.layer_rates)
            reset_for_retrain(model, "rewind", point)
            per_epoch = train(model, student, start, plan.epochs, teacher if distils else None)
            rows.append(record(arm, level, student, began, per_epoch))
    return rows


def summarize(rows: list[dict], metric: str = "final_test_accuracy") -> str:
    """A Markdown table: mean ± std over seeds of `metric` (an accuracy), one row per level."""
    arms = list(dict.fromkeys(r["arm"] for r in rows if r["arm"] != "dense"))
    levels = sorted({r["level"] for r in rows if r["arm"] != "dense"})
    dense = [r[metric] for r in rows if r["arm"] == "dense" and r[metric] is not None]
    seeds = len({r["seed"] for r in rows})

    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"

    lines = [
        f"`{metric}` (%), mean ± std over {seeds} seed(s); dense network: {cell(dense)}.",
        "",
        "| level | % remaining | " + " | ".join(arms) + " |",
        "|---:|---:|" + "---:|" * len(arms),
    ]
    for level in levels:
        at = [r for r in rows if r["level"] == level and r["arm"] != "dense"]
        remaining = np.mean([r["percent_remaining"] for r in at])
        cells = [cell([r[metric] for r in at if r["arm"] == arm]) for arm in arms]
        lines.append(f"| {level} | {remaining:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plan_from_config(config, steps_per_epoch: int) -> KDPlan:
    from tf_lottery.experiments.optimizers import to_steps
    from tf_lottery.experiments.schema import csv_list, parse_rates

    total = to_steps(config.train.training_steps, steps_per_epoch)
    rewind = to_steps(config.pruning.rewind_to, steps_per_epoch)
    for key, value in (("train.training_steps", total), ("pruning.rewind_to", rewind)):
        if value % steps_per_epoch:
            _fail(
                key, f"whole epochs ('<N>ep', or a multiple of {steps_per_epoch} steps)", _value(config, key)
            )
    if rewind >= total:
        _fail("pruning.rewind_to", "a point before the end of training", config.pruning.rewind_to)
    arms = arms_of(config)
    return KDPlan(
        arms=arms,
        levels=int(config.run.levels),
        pruning_rate=float(config.pruning.rate),
        scope=config.pruning.scope,
        layer_rates=parse_rates(config.pruning.layer_rates),
        epochs=total // steps_per_epoch,
        rewind_epoch=rewind // steps_per_epoch if any(ARMS[a][0] for a in arms) else 0,
        batch_size=int(config.train.batch_size),
        kd_weight=float(config.kd.weight),
        temperature=float(config.kd.temperature),
        cache_teacher_logits=bool(config.kd.cache_teacher_logits),
        exclude=tuple(csv_list(config.pruning.exclude)),
    )


def _value(config, key):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def run_kd_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs every replicate of a `kd_ticket` / `kd_rewind` config.

    Writes `<workdir>/<experiment>/results.json` (the rows and the config)
    and `summary.md` (the table), and returns `{"rows", "table", "dir",
    "elapsed_s"}`. Runs are not resumed: a new call trains again.
    """
    from tf_lottery.data.registry import load_dataset
    from tf_lottery.experiments.optimizers import build_optimizer
    from tf_lottery.models import build_model

    validate(config)
    began = time.time()
    data = load_dataset(config.dataset)
    steps = data.steps_per_epoch(int(config.train.batch_size))
    plan = plan_from_config(config, steps)
    options = {k: v for k, v in config.model.items() if k != "name"}

    def model_fn():
        return build_model(config.model.name, data.input_shape, data.num_classes, **options)

    cached = plan.cache_teacher_logits and not data.augment
    if config.run.verbose:
        log(
            f"{config.experiment} on {config.dataset.name}/{config.model.name}: arms {', '.join(plan.arms)}; "
            f"{plan.levels} levels of {plan.pruning_rate:.0%} {plan.scope} pruning; {plan.epochs} epochs; "
            f"rewind to epoch {plan.rewind_epoch}; kd_weight={plan.kd_weight}, T={plan.temperature}; "
            f"teacher logits {'cached' if cached else 'computed per batch'}"
        )
    rows = []
    for replicate in range(int(config.run.replicates)):
        rows += run_replicate(
            plan,
            data,
            model_fn,
            lambda: build_optimizer(config.train, steps),
            seed=int(config.seed) + replicate,
            log=log if config.run.verbose else (lambda line: None),
        )
    table = summarize(rows)
    directory = os.path.join(workdir, config.experiment)
    os.makedirs(directory, exist_ok=True)
    atomic_io.write_json(os.path.join(directory, "results.json"), {"config": config.to_dict(), "rows": rows})
    elapsed = time.time() - began
    with open(os.path.join(directory, "summary.md"), "w") as handle:
        handle.write(f"{table}\n\nWall time: {elapsed:.0f} s.\n")
    if config.run.verbose:
        log(f"{table}\n\nWall time: {elapsed:.0f} s. Results: {directory}")
    return {"rows": rows, "table": table, "dir": directory, "elapsed_s": elapsed}


for _name, _summary in (
    (
        "kd_ticket",
        "IMP rewound to initialisation and retrained on the dense network's soft labels (Ma et al. 2021)",
    ),
    (
        "kd_rewind",
        "IMP rewound to an early epoch and retrained on the dense network's soft labels (Ma et al. 2021)",
    ),
):
    registry.register(
        registry.Kind(
            name=_name, run=run_kd_experiment, defaults=kd_defaults, validate=validate, summary=_summary
        )
    )
