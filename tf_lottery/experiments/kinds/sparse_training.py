"""The `rigl`, `set` and `static` kinds: training a network that is sparse from the start.

Each replicate trains the network once (`round_0`) from random masks at
`sparse.sparsity`, spread over the layers by `sparse.distribution`
(`uniform`, `erdos_renyi`/`er`, `erdos_renyi_kernel`/`erk`; see
`tf_lottery.pruning.distributions`), drawn with the replicate's seed, so the
three kinds start one replicate from the same weights and the same masks.

- `static`: the masks never change (a fixed random sparse network).
- `set` (Mocanu et al. 2018) and `rigl` (Evci et al. 2020): every
  `sparse.update_every` data steps between `sparse.begin` and `sparse.end`
  (fractions of training), the library callback
  `tf_lottery.sparse_training.callback.DynamicSparseTraining` rewires each
  sparse tensor: it drops the active weights of smallest magnitude (the
  cosine-decayed fraction of `sparse.drop_fraction`) and grows as many
  inactive ones, at random (SET) or by the magnitude of the dense gradient
  (RigL) on the training batch of that step. Every tensor keeps its count,
  so the sparsity is exact throughout.

The updates run at the trainer's chunk boundaries (`kinds.training_runs`);
the masks after each update are stored (`masks.npz`: the latest update's and
the latest one covered by a checkpoint), so a run killed at any moment
resumes with the masks of the checkpoint it restarts from and ends with the
masks and metrics of an uninterrupted run. `start.npz` holds the initial
masks and weights; `metrics.json` adds `sparse_updates`, `replaced` (the
weights dropped and regrown in all, `floor(f(t) * active)` per tensor and
update), `grown` (those of them that were inactive before: a dropped weight
can be grown back at once) and `mask_change` (the fraction of the initially
active weights that are inactive at the end). A dense baseline is the `lottery` kind's round 0 (same
seed, same weights, same steps), or `static` with `sparse.sparsity=0`.
Layers named in `pruning.exclude` stay dense and outside the sparsity (RigL's
"uniform, first layer dense": `--config.pruning.exclude=fc1`).

    python -m tf_lottery.main --config=configs/rigl_mnist1d.py --workdir=runs

Reference:
    Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML
    2020, arXiv:1911.11134; Mocanu et al., "Scalable training of artificial
    neural networks with adaptive sparse connectivity inspired by network
    science", Nature Communications 2018, arXiv:1707.04780.
"""

from __future__ import annotations

import copy
import functools
import os

import ml_collections
import numpy as np

from tf_lottery.experiments import registry, schema, trainer
from tf_lottery.experiments.kinds import controls, training_runs
from tf_lottery.experiments.optimizers import to_steps
from tf_lottery.experiments.schema import fail as _fail
from tf_lottery.lottery.rewind import reset_for_retrain
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.pruning.distributions import DISTRIBUTIONS, prune_to_distribution
from tf_lottery.sparse_training.callback import DynamicSparseTraining
from tf_lottery.utils import atomic_io

__all__ = ["KINDS", "defaults", "run_experiment", "update_steps", "validate"]

KINDS = ("rigl", "set", "static")
DISTRIBUTION_NAMES = DISTRIBUTIONS + ("er", "erk")
START = "start.npz"
MASKS = "masks.npz"
# Options of the `sparse` group that only the dynamic kinds (rigl, set) have.
DYNAMIC_KEYS = ("drop_fraction", "update_every", "begin", "end")


def defaults(kind: str = "rigl") -> ml_collections.ConfigDict:
    """`schema.defaults()` plus the `sparse` group of `kind` (RigL's published settings).

    Args:
        kind: str. `"rigl"`, `"set"` or `"static"`. Defaults to `"rigl"`.

    Example:

    ```python
    config = defaults("set")
    config.sparse.sparsity = 0.95
    ```
    """
    if kind not in KINDS:
        _fail("experiment", f"one of {KINDS}", kind)
    config = schema.defaults()
    config.experiment = kind
    config.run.levels = 0
    config.run.branches = ""
    config.sparse = ml_collections.ConfigDict()
    # Fraction of the prunable weights that are inactive, from the first step to the last.
    config.sparse.sparsity = 0.9
    # How the sparsity is spread over layers: 'uniform', 'erdos_renyi' ('er') or
    # 'erdos_renyi_kernel' ('erk').
    config.sparse.distribution = "erk"
    if kind != "static":
        # alpha: the fraction of each tensor's active weights replaced at step 0,
        # decayed to 0 at `end` by a cosine.
        config.sparse.drop_fraction = 0.3
        # delta_t: steps between mask updates, '<N>it' or '<N>ep'.
        config.sparse.update_every = "100it"
        # Fractions of `train.training_steps` between which the masks are updated.
        config.sparse.begin = 0.0
        config.sparse.end = 0.75
    return config


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the `sparse` options, then every shared option with `schema.validate`.

    Raises ValueError naming the option, the value received and what is
    expected, before anything is written.
    """
    kind = config.get("experiment")
    if kind not in KINDS:
        _fail("experiment", f"one of {KINDS}", kind)
    if "sparse" not in config:
        raise ValueError(
            "Missing config group `config.sparse`: start the config from "
            f"`tf_lottery.experiments.kinds.sparse_training.defaults({kind!r})`."
        )
    group, reference = config.sparse, defaults(kind).sparse
    unknown = sorted(set(group.keys()) - set(reference.keys()))
    if unknown:
        where = " (only the rigl and set kinds update masks)" if unknown[0] in DYNAMIC_KEYS else ""
        raise ValueError(
            f"Unknown config key `config.sparse.{unknown[0]}` for experiment {kind!r}{where}. "
            f"Known keys of `config.sparse`: {sorted(reference.keys())}."
        )
    missing = sorted(set(reference.keys()) - set(group.keys()))
    if missing:
        raise ValueError(
            f"Missing config key `config.sparse.{missing[0]}`: start the config from "
            f"`tf_lottery.experiments.kinds.sparse_training.defaults({kind!r})`."
        )
    if not _is_number(group.sparsity) or not 0.0 <= group.sparsity < 1.0:
        _fail("sparse.sparsity", "a fraction in [0, 1)", group.sparsity)
    if group.distribution not in DISTRIBUTION_NAMES:
        _fail("sparse.distribution", f"one of {DISTRIBUTION_NAMES}", group.distribution)
    if kind != "static":
        if not _is_number(group.drop_fraction) or not 0.0 < group.drop_fraction <= 1.0:
            _fail("sparse.drop_fraction", "a fraction in (0, 1]", group.drop_fraction)
        for key in ("begin", "end"):
            if not _is_number(group[key]) or not 0.0 <= group[key] <= 1.0:
                _fail(f"sparse.{key}", "a fraction of training in [0, 1]", group[key])
        if group.end <= group.begin:
            _fail("sparse.end", f"a fraction greater than sparse.begin={group.begin}", group.end)
        from tf_lottery.lottery.rewind import RewindPoint

        try:
            every = RewindPoint.parse(group.update_every)
        except ValueError:
            every = None
        if every is None or every.amount < 1:
            _fail("sparse.update_every", "'<N>it' or '<N>ep' with N >= 1, e.g. '100it'", group.update_every)
    if int(config.run.levels) != 0:
        _fail("run.levels", f"0 ({kind} trains once per replicate)", config.run.levels)
    if schema.csv_list(config.run.branches):
        _fail("run.branches", f"'' (no controls for {kind})", config.run.branches)
    base = schema.defaults().pruning
    for key in ("rate", "scope", "layer_rates", "rewind_to", "retrain"):
        if config.pruning[key] != base[key]:
            _fail(
                f"pruning.{key}",
                f"its default {base[key]!r}: {kind} does not prune by magnitude; set the masks "
                "with `config.sparse.sparsity` and `config.sparse.distribution`",
                config.pruning[key],
            )
    shared = copy.deepcopy(config)
    with shared.unlocked():
        del shared["sparse"]
        shared.experiment = "lottery"
    schema.validate(shared)


def update_steps(config: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int) -> list[int]:
    """The data steps after which the masks are rewired (none for `static`).

    Every multiple of `update_every` from `begin` (inclusive) to `end`
    (exclusive), as fractions of `total_steps`; the callback counts optimizer
    steps the same way inside `fit()`.
    """
    if config.experiment == "static":
        return []
    group = config.sparse
    every = to_steps(group.update_every, steps_per_epoch)
    begin, end = int(round(group.begin * total_steps)), int(round(group.end * total_steps))
    return [step for step in range(every, total_steps, every) if begin <= step < end]


def describe(config: ml_collections.ConfigDict) -> str:
    group = config.sparse
    name = {"rigl": "RigL", "set": "SET", "static": "static sparse training"}[config.experiment]
    text = (
        f"{name} of {config.model.name} on {config.dataset.name}: {group.sparsity:.0%} sparse, "
        f"{group.distribution} masks"
    )
    if config.experiment != "static":
        text += (
            f", drop fraction {group.drop_fraction} (cosine) every {group.update_every} from "
            f"{group.begin:.0%} to {group.end:.0%} of training"
        )
    return text


class _MaskLog:
    """The masks after the updates, kept so that a restart resumes with the right ones.

    One file, rewritten atomically after every update, holds two mask sets:
    `latest` (the update just made) and `committed` (the latest update at or
    before the last checkpoint written, i.e. the newest multiple of the
    checkpoint interval below the update step). A run restarted from a
    checkpoint at data position `p` uses `latest` if it is at or before `p`,
    else `committed`: whichever way it was killed, these are the masks that
    the checkpoint's weights were trained with.
    """

    def __init__(self, directory: str, checkpoint_every: int, initial: list):
        self.path = os.path.join(directory, MASKS)
        self.checkpoint_every = checkpoint_every
        self.committed = self.latest = (0, [np.asarray(m, bool) for m in initial], [])
        if atomic_io.exists(self.path):
            archive = atomic_io.load_npz(self.path)
            info = atomic_io.array_json(archive["info"])
            for slot in ("committed", "latest"):
                masks = [archive[k] for k in sorted(k for k in archive if k.startswith(f"{slot}_"))]
                setattr(self, slot, (int(info[slot]["step"]), masks, info[slot]["history"]))

    def at(self, position: int) -> tuple[list, list]:
        """`(masks, history)` of the model at data position `position`."""
        step, masks, history = self.latest if self.latest[0] <= position else self.committed
        if step > position:
            raise RuntimeError(
                f"The stored masks ('{self.path}', updates at steps {self.committed[0]} and "
                f"{self.latest[0]}) do not reach back to the checkpoint at step {position}."
            )
        return masks, history

    def record(self, step: int, masks: list, history: list) -> None:
        checkpointed = ((step - 1) // self.checkpoint_every) * self.checkpoint_every
        if self.latest[0] <= checkpointed:
            self.committed = self.latest
        self.latest = (step, [np.asarray(m, bool) for m in masks], list(history))
        arrays = {}
        info = {}
        for slot in ("committed", "latest"):
            step_, masks_, history_ = getattr(self, slot)
            arrays.update({f"{slot}_{i:05d}": m for i, m in enumerate(masks_)})
            info[slot] = {"step": step_, "history": history_}
        arrays["info"] = atomic_io.json_array(info)
        atomic_io.write_npz(self.path, arrays)


def _initial_masks(replicate, directory: str) -> list:
    """The replicate's random masks at the configured sparsity and distribution (stored in `start.npz`)."""
    model = replicate.model
    path = os.path.join(directory, START)
    if atomic_io.exists(path):
        return Ticket.load(path).masks
    group = replicate.config.sparse
    controls.set_masks(model, controls.dense_masks(model))
    prune_to_distribution(model, float(group.sparsity), group.distribution, seed=replicate.seed)
    masks = controls.get_masks(model)
    ticket = Ticket.from_model(
        model,
        weights=replicate.initial.model_values,
        metadata={"what": "start", "replicate": replicate.replicate, "distribution": group.distribution},
    )
    ticket.save(path)
    return masks


def _callback(replicate, method: str, total_steps: int, batch) -> DynamicSparseTraining:
    group = replicate.config.sparse
    callback = DynamicSparseTraining(
        method,
        data=batch,
        batch_size=int(replicate.config.train.batch_size),
        drop_fraction=float(group.drop_fraction),
        delta_t=max(1, to_steps(group.update_every, replicate.steps_per_epoch)),
        t_end=max(1, int(round(group.end * total_steps))),
        seed=replicate.seed,
    )
    callback.set_model(replicate.model)
    callback.on_train_begin()
    return callback


def _training_batch(replicate, plan: trainer.LevelPlan, step: int) -> tuple:
    """The training batch of data step `step` as NumPy arrays `(x, y)`."""
    x, y = next(iter(trainer.train_stream(replicate.data, plan, step, step + 1)))
    return np.asarray(x), np.asarray(y)


def _run_replicate(replicate) -> None:
    config = replicate.config
    method = config.experiment
    directory = replicate.level_dir(0)
    if not training_runs.begin(directory):
        return
    model = replicate.model
    initial = _initial_masks(replicate, directory)
    controls.set_masks(model, initial)
    reset_for_retrain(model, "rewind", replicate.initial)  # initial weights (masked) and optimizer
    total = replicate.total_steps
    updates = update_steps(config, total, replicate.steps_per_epoch)
    plan = training_runs.plan(replicate, 0, total, capture_steps=updates)
    log = _MaskLog(directory, plan.checkpoint_every, initial)
    history = []
    resumed = training_runs.checkpoint_position(directory)
    if resumed is not None:
        masks, history = log.at(resumed[1])
        controls.set_masks(model, masks)  # the trainer restores the checkpoint's weights and optimizer
    callback = None
    if updates:
        callback = _callback(replicate, method, total, _training_batch(replicate, plan, updates[0] - 1))

    def on_capture(position: int) -> None:
        if position not in updates:
            return
        # RigL's gradient is taken on the batch that brought training to this step.
        callback.data = _training_batch(replicate, plan, position - 1)
        record = callback.update(position)
        history.append(
            {
                "step": position,
                "drop_fraction": float(record["drop_fraction"]),
                "replaced": int(sum(record["replaced"].values())),
                "grown": int(record["grown"]),
            }
        )
        log.record(position, controls.get_masks(model), history)

    result = trainer.train_level(model, replicate.data, plan, directory, on_capture=on_capture)
    end_masks = controls.get_masks(model)
    active = sum(int(np.count_nonzero(m)) for m in initial)
    gone = sum(int(np.count_nonzero(a & ~b)) for a, b in zip(initial, end_masks))
    training_runs.finish(
        replicate,
        directory,
        0,
        result,
        plan,
        sparse_updates=len(history),
        replaced=sum(r["replaced"] for r in history),
        grown=sum(r["grown"] for r in history),
        mask_change=gone / active if active else 0.0,
        updates=history,
    )


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) a `rigl`, `set` or `static` config: one row per replicate (`round_0`)."""
    validate(config)
    return training_runs.run_replicates(
        config, workdir, log, _run_replicate, title=describe(config), main=config.experiment, levels=0
    )


_SUMMARIES = {
    "rigl": "RigL: sparse from the start, masks rewired by weight magnitude and dense gradient (Evci et al. 2020)",
    "set": "SET: sparse from the start, masks rewired by weight magnitude and random growth (Mocanu et al. 2018)",
    "static": "static sparse training: a fixed random mask at a chosen sparsity and layer distribution",
}
for _kind in KINDS:
    registry.register(
        registry.Kind(
            name=_kind,
            run=run_experiment,
            defaults=functools.partial(defaults, _kind),
            validate=validate,
            summary=_SUMMARIES[_kind],
        )
    )
