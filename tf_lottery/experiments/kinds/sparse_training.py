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
  fraction `sparse.drop_fraction`, annealed by `sparse.drop_fraction_anneal`)
  and grows as many inactive ones (starting at `sparse.grow_init`), at
  random (SET) or by the magnitude of the dense gradient (RigL) of the
  update step's own training batch (`sparse.gradient='train_batch'`,
  captured in the compiled step; `'drawn_batch'` recomputes it on that
  batch after the step). Every tensor keeps its count, so the sparsity is
  exact throughout. Update steps must be multiples of
  `run.steps_per_execution`.

The updates run at the trainer's chunk boundaries, through its hook
(`experiments.callback_hook`) in the one level loop;
the masks after each update are stored (`masks.npz`: the latest update's and
the latest one covered by a checkpoint), so a run killed at any moment
resumes with the masks of the checkpoint it restarts from and ends with the
masks and metrics of an uninterrupted run. `start.npz` holds the initial
masks and weights; `metrics.json` adds `sparse_updates`, `replaced` (the
weights dropped and regrown in all, `floor(f(t) * active)` per tensor and
update), `grown` (those of them that were inactive before: a dropped weight
can be grown back at once) and `mask_change` (the fraction of the initially
active weights that are inactive at the end). A dense baseline is the
`lottery` kind's round 0 (same seed, same weights, same steps), or `static`
with `sparse.sparsity=0`.

A dense first layer, two ways: `sparse.dense_layers='fc1'` keeps it under a
mask of ones that rewiring never touches, inside the sparsity budget
(`sparse.fixed_layers='in_budget'`, the others sparser) or outside it
(`'outside_budget'`, RigL's convention, the others at the target);
`pruning.exclude='fc1'` leaves it unwrapped, outside the reported sparsity.

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

import keras
import ml_collections
import numpy as np

from tf_lottery.core.walk import dense_masks, get_masks, set_masks
from tf_lottery.experiments import registry, schema, trainer
from tf_lottery.experiments.callback_hook import CallbackHook
from tf_lottery.experiments.level_loop import Line, Training, load_ticket
from tf_lottery.experiments.optimizers import to_steps
from tf_lottery.experiments.runner import run_levels
from tf_lottery.experiments.schema import fail as _fail
from tf_lottery.lottery.rewind import reset_for_retrain
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.pruning.distributions import BUDGETS, DISTRIBUTIONS, prune_to_distribution
from tf_lottery.sparse_training import schedule
from tf_lottery.sparse_training.callback import GRADIENTS, DynamicSparseTraining
from tf_lottery.sparse_training.grow_init import GROW_INITS, snapshot_initial_values
from tf_lottery.utils import atomic_io

__all__ = ["KINDS", "defaults", "run_experiment", "update_steps", "validate"]

KINDS = ("rigl", "set", "static")
DISTRIBUTION_NAMES = DISTRIBUTIONS + ("er", "erk")
START = "start.npz"
MASKS = "masks.npz"
# Options of the `sparse` group that only the dynamic kinds (rigl, set) have.
DYNAMIC_KEYS = (
    "drop_fraction",
    "drop_fraction_anneal",
    "update_every",
    "begin",
    "end",
    "grow_init",
    "gradient",
)


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
    # Layers (comma-separated names or globs, e.g. "fc1") whose weights stay dense:
    # masks of ones that are never rewired. `pruning.exclude` instead leaves a
    # layer unwrapped, outside the sparsity altogether.
    config.sparse.dense_layers = ""
    # Fixed per-layer sparsities, "name=sparsity,glob*=sparsity" (rigl's custom_sparsity_map).
    config.sparse.custom_sparsity = ""
    # Whether `sparsity` counts the dense and fixed layers ('in_budget': the others
    # become sparser) or only the solved ones ('outside_budget': rigl's convention).
    config.sparse.fixed_layers = "in_budget"
    # ERK's raw densities are raised to this power (rigl's erk_power_scale; ERK only).
    config.sparse.erk_power_scale = 1.0
    if kind != "static":
        # alpha: the fraction of each tensor's active weights replaced at `begin`,
        # annealed to 0 at `end` by `drop_fraction_anneal`.
        config.sparse.drop_fraction = 0.3
        # 'cosine' (the paper), 'constant', 'linear' or 'exponential_<k>'.
        config.sparse.drop_fraction_anneal = "cosine"
        # delta_t: steps between mask updates, '<N>it' or '<N>ep'.
        config.sparse.update_every = "100it"
        # Fractions of `train.training_steps` between which the masks are updated.
        config.sparse.begin = 0.0
        config.sparse.end = 0.75
        # Value of grown weights: 'zeros' (the paper), 'random_normal' or 'initial_value'.
        config.sparse.grow_init = "zeros"
        # RigL's dense gradient: 'train_batch' (the update step's own batch, captured in
        # the train step, as in the paper) or 'drawn_batch' (recomputed by the callback
        # on that batch after the step's weight update). Unused by SET.
        config.sparse.gradient = "train_batch"
    return config


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_tokens(arg, methods, distributions) -> tuple[str, str, bool]:
    """`(method, distribution, smoke)` from a config file's argument, e.g. `'set,uniform,smoke'`.

    The config files of these kinds take comma-separated tokens: at most one
    method from `methods` (default the first), at most one distribution from
    `distributions` (default the first) and `smoke`; anything else is refused.
    """
    allowed = ("smoke", *methods, *distributions)
    tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
    for token in tokens:
        if token not in allowed:
            raise ValueError(
                f"Invalid config argument: expected comma-separated tokens from {allowed}. "
                f"Received: {arg!r} (unknown token {token!r})."
            )
    chosen = [t for t in tokens if t in methods] or [methods[0]]
    spread = [t for t in tokens if t in distributions] or [distributions[0]]
    if len(chosen) > 1 or len(spread) > 1:
        raise ValueError(
            f"Invalid config argument: expected at most one method from {tuple(methods)} and one "
            f"distribution from {tuple(distributions)}. Received: {arg!r}."
        )
    return chosen[0], spread[0], "smoke" in tokens


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
            f"Unknown config key `config.sparse.{unknown[0]}` for experiment {kind!r}{where}."
            f"{schema.did_you_mean(f'sparse.{unknown[0]}', reference.keys())} "
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
    schema.parse_rates(group.custom_sparsity, "sparse.custom_sparsity")
    if group.fixed_layers not in BUDGETS:
        _fail("sparse.fixed_layers", f"one of {BUDGETS}", group.fixed_layers)
    if not _is_number(group.erk_power_scale) or not group.erk_power_scale > 0:
        _fail("sparse.erk_power_scale", "a number > 0", group.erk_power_scale)
    if group.erk_power_scale != 1.0 and group.distribution not in ("erk", "erdos_renyi_kernel"):
        _fail(
            "sparse.erk_power_scale",
            f"1.0 with sparse.distribution={group.distribution!r} (it scales ERK densities only)",
            group.erk_power_scale,
        )
    if kind != "static":
        if not _is_number(group.drop_fraction) or not 0.0 < group.drop_fraction <= 1.0:
            _fail("sparse.drop_fraction", "a fraction in (0, 1]", group.drop_fraction)
        try:
            schedule.parse_anneal(group.drop_fraction_anneal)
        except ValueError:
            _fail(
                "sparse.drop_fraction_anneal",
                "one of 'cosine', 'constant', 'linear' or 'exponential_<k>' with a number k > 0",
                group.drop_fraction_anneal,
            )
        if group.grow_init not in GROW_INITS:
            _fail("sparse.grow_init", f"one of {GROW_INITS}", group.grow_init)
        if group.gradient not in GRADIENTS:
            _fail("sparse.gradient", f"one of {GRADIENTS}", group.gradient)
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
        per_call = int(config.run.steps_per_execution)
        if every.unit == "it" and every.amount % per_call:
            _fail(
                "sparse.update_every",
                f"a multiple of run.steps_per_execution={per_call} (Keras runs that many steps per "
                "call, and masks change only between calls)",
                group.update_every,
            )
    if int(config.run.levels) != 0:
        _fail("run.levels", f"0 ({kind} trains once per replicate)", config.run.levels)
    if schema.csv_list(config.run.branches):
        _fail("run.branches", f"'' (no controls for {kind})", config.run.branches)
    base = schema.defaults().pruning
    for key in ("rate", "scope", "layer_rates", "rewind_to", "retrain", "structure", "scorer"):
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

    `begin + n * update_every` (step 0 excluded) before `end`, with `begin`
    and `end` fractions of `total_steps`: the steps at which
    `DynamicSparseTraining` updates inside `fit()` (`schedule.next_update_step`).
    """
    return _update_steps(config.experiment, config.sparse, total_steps, steps_per_epoch)


def _update_steps(method: str, group, total_steps: int, steps_per_epoch: int) -> list[int]:
    if method == "static":
        return []
    begin, end, every = _schedule(group, total_steps, steps_per_epoch)
    steps, step = [], schedule.next_update_step(0, begin, end, every) if end > begin else None
    while step is not None:
        steps.append(step)
        step = schedule.next_update_step(step, begin, end, every)
    return steps


def _schedule(group, total_steps: int, steps_per_epoch: int) -> tuple[int, int, int]:
    """`(begin_step, end_step, delta_t)` of a dynamic kind's `config.sparse` group."""
    every = max(1, to_steps(group.update_every, steps_per_epoch))
    return int(round(group.begin * total_steps)), int(round(group.end * total_steps)), every


def describe(config: ml_collections.ConfigDict) -> str:
    group = config.sparse
    name = {"rigl": "RigL", "set": "SET", "static": "static sparse training"}[config.experiment]
    text = (
        f"{name} of {config.model.name} on {config.dataset.name}: {group.sparsity:.0%} sparse, "
        f"{group.distribution} masks"
    )
    if config.experiment != "static":
        text += (
            f", drop fraction {group.drop_fraction} ({group.drop_fraction_anneal}) every "
            f"{group.update_every} from {group.begin:.0%} to {group.end:.0%} of training"
        )
        if config.experiment == "rigl":
            text += f", {group.gradient} gradient"
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
            info = atomic_io.json_entry(archive, "info", self.path)
            for slot in ("committed", "latest"):
                entry = info.get(slot)
                if not (
                    isinstance(entry, dict)
                    and isinstance(entry.get("step"), int)
                    and isinstance(entry.get("history"), list)
                ):
                    raise atomic_io.DamagedFileError(self.path, f"its entry 'info' has no valid {slot!r}")
                masks = [archive[k] for k in sorted(k for k in archive if k.startswith(f"{slot}_"))]
                setattr(self, slot, (entry["step"], masks, entry["history"]))

    def at(self, position: int) -> tuple[list, list]:
        """`(masks, history)` of the model at data position `position`."""
        step, masks, history = self.latest if self.latest[0] <= position else self.committed
        if step > position:
            raise RuntimeError(
                f"The stored masks ('{self.path}', updates at steps {self.committed[0]} and "
                f"{self.latest[0]}) do not reach back to the checkpoint at step {position}."
            )
        return [m.copy() for m in masks], list(history)

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


def _draw_masks(model, group, seed: int) -> None:
    """Prunes `model` to `group`'s sparsity and distribution with random masks drawn from `seed`."""
    prune_to_distribution(
        model,
        float(group.sparsity),
        group.distribution,
        dense=schema.csv_list(group.dense_layers),
        custom_sparsity=schema.parse_rates(group.custom_sparsity, "sparse.custom_sparsity"),
        erk_power_scale=float(group.erk_power_scale),
        fixed_layers=group.fixed_layers,
        seed=seed,
    )


def _check_layer_options(config: ml_collections.ConfigDict):
    """`check(data)`: draws the masks once on a throwaway model, before anything is written.

    Layer names in `sparse.dense_layers` / `sparse.custom_sparsity` and
    densities the distribution cannot reach are only known with the model;
    the error names the config options.
    """

    def check(data) -> None:
        from tf_lottery.experiments.network import build_network

        group = config.sparse
        try:
            _draw_masks(build_network(config, data, int(config.seed)), group, int(config.seed))
        except ValueError as error:
            raise ValueError(
                f"Invalid value for `config.sparse.dense_layers`={group.dense_layers!r} / "
                f"`config.sparse.custom_sparsity`={group.custom_sparsity!r} / "
                f"`config.sparse.distribution`={group.distribution!r} with "
                f"`config.sparse.sparsity`={group.sparsity!r}: {error}"
            ) from error
        finally:
            # The run builds its models afresh: the throwaway one leaves no trace in Keras'
            # layer-name counters (auto-named layers get the names they would have had).
            keras.backend.clear_session()

    return check


def _initial_masks(replicate, group, directory: str) -> list:
    """The replicate's random masks at the configured sparsity and distribution (stored in `start.npz`)."""
    model = replicate.model
    path = os.path.join(directory, START)
    if atomic_io.exists(path):
        return load_ticket(directory, START).masks
    set_masks(model, dense_masks(model))
    _draw_masks(model, group, replicate.seed)
    masks = get_masks(model)
    ticket = Ticket.from_model(
        model,
        weights=replicate.initial.model_values,
        metadata={"what": "start", "replicate": replicate.replicate, "distribution": group.distribution},
    )
    ticket.save(path)
    return masks


def _initial_values(replicate) -> list:
    """The pruned weights' values at initialisation, before pruning (for `grow_init='initial_value'`)."""
    model = replicate.model
    set_masks(model, dense_masks(model))
    replicate.initial.restore_weights(model)
    return snapshot_initial_values(model)


def _callback(replicate, method: str, group, batch_size: int, batch, initial) -> DynamicSparseTraining:
    """The library callback of the replicate's config (the trainer sets it up as `fit()` would)."""
    begin, end, every = _schedule(group, replicate.total_steps, replicate.steps_per_epoch)
    drawn = method == "rigl" and group.gradient == "drawn_batch"
    callback = DynamicSparseTraining(
        method,
        data=batch if drawn else None,
        gradient=group.gradient,
        batch_size=batch_size if drawn else None,
        drop_fraction=float(group.drop_fraction),
        drop_fraction_anneal=group.drop_fraction_anneal,
        delta_t=every,
        begin_step=begin,
        t_end=max(end, begin + 1),
        grow_init=group.grow_init,
        initial_values=initial,
        seed=replicate.seed,
    )
    return callback


def _check_steps_per_execution(per_call: int, group, updates: list) -> None:
    if any(step % per_call for step in updates):
        raise ValueError(
            f"Invalid value for `config.sparse.update_every`: the mask updates fall on steps {updates[:4]}..., "
            f"not all multiples of run.steps_per_execution={per_call}, and Keras runs that many steps per "
            f"call. Received: sparse.update_every={group.update_every!r}, sparse.begin="
            f"{group.begin!r}. Choose them so that every update step is a multiple of {per_call}, "
            "or lower `config.run.steps_per_execution`."
        )


def _training_batch(replicate, plan: trainer.LevelPlan, step: int) -> tuple:
    """The training batch of data step `step` as NumPy arrays `(x, y)`."""
    x, y = next(iter(trainer.train_stream(replicate.data, plan, step, step + 1)))
    return np.asarray(x), np.asarray(y)


class _SparseHook(CallbackHook):
    """`DynamicSparseTraining` in the trainer (or only the stored masks, for `static`).

    The masks after each update go to the mask log (`_MaskLog`); a resumed
    level sets the masks of its checkpoint before the checkpoint's weights
    and optimizer are restored (setting masks zeroes the optimizer slots
    where they change), and the callback counts steps on from the restored
    optimizer, as it does across `fit()` calls.
    """

    progress_files = (MASKS,)

    def __init__(self, replicate, callback, updates, initial, plan):
        super().__init__(callback, updates if callback is not None else ())
        self.replicate, self.initial, self.plan = replicate, initial, plan
        self.history: list[dict] = []

    def load(self, level_dir: str) -> None:
        self.log = _MaskLog(level_dir, self.plan.checkpoint_every, self.initial)

    def restore(self, position, snapshot=None):
        if position is not None:
            masks, self.history = self.log.at(position)
            set_masks(self.replicate.model, masks)

    def begin(self, model, plan, position, resumed):
        if self.callback is not None:
            super().begin(model, plan, position, resumed)

    def at(self, position: int) -> None:
        callback = self.callback
        if callback.data is not None:
            # 'drawn_batch': the gradient of the batch that brought training to this step.
            callback.data = _training_batch(self.replicate, self.plan, position - 1)
        count = len(callback.history)
        super().at(position)
        record = callback.history[-1] if len(callback.history) > count else {}
        if record.get("step") != position:
            raise RuntimeError(f"DynamicSparseTraining did not update at step {position}.")
        self.history.append(
            {
                "step": position,
                "drop_fraction": float(record["drop_fraction"]),
                "replaced": int(sum(record["replaced"].values())),
                "grown": int(record["grown"]),
            }
        )
        self.log.record(position, get_masks(self.replicate.model), self.history)

    def end(self, position: int) -> None:
        if self.callback is not None:
            super().end(position)


class _Sparse(Training):
    """Level 0 starts from the replicate's random masks (`start.npz`) and trains with `DynamicSparseTraining`.

    Args:
        config: ConfigDict. The run's config; the plug-in keeps the kind
            (`experiment`), the `sparse` group, `train.batch_size` and
            `run.steps_per_execution`.
    """

    check_start = False  # `start.npz` holds the drawn masks and the unmasked initial weights
    metadata_branch = False

    def __init__(self, config: ml_collections.ConfigDict):
        self.method, self.group = config.experiment, config.sparse
        self.batch_size = int(config.train.batch_size)
        self.steps_per_execution = int(config.run.steps_per_execution)

    def start(self, context, level):
        model, group = context.model, self.group
        self.initial = _initial_masks(context, group, context.level_dir(level))
        dynamic = self.method != "static"
        self.values = _initial_values(context) if dynamic and group.grow_init == "initial_value" else None
        set_masks(model, self.initial)
        reset_for_retrain(model, "rewind", context.initial)  # initial weights (masked) and optimizer
        return True

    def capture_steps(self, context, level):
        return ()

    def hooks(self, context, level, plan):
        method, group = self.method, self.group
        updates = _update_steps(method, group, context.total_steps, context.steps_per_epoch)
        _check_steps_per_execution(self.steps_per_execution, group, updates)
        callback = None
        if updates:
            drawn = method == "rigl" and group.gradient == "drawn_batch"
            batch = _training_batch(context, plan, 0) if drawn else None
            callback = _callback(context, method, group, self.batch_size, batch, self.values)
        self.hook = _SparseHook(context, callback, updates, self.initial, plan)
        return [self.hook]

    def finish(self, context, level, result, plan):
        history, initial = self.hook.history, self.initial
        end_masks = get_masks(context.model)
        active = sum(int(np.count_nonzero(m)) for m in initial)
        gone = sum(int(np.count_nonzero(a & ~b)) for a, b in zip(initial, end_masks))
        return {
            "sparse_updates": len(history),
            "replaced": sum(r["replaced"] for r in history),
            "grown": sum(r["grown"] for r in history),
            "mask_change": gone / active if active else 0.0,
            "updates": history,
        }


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) a `rigl`, `set` or `static` config: one row per replicate (`round_0`)."""
    validate(config)
    return run_levels(
        config,
        workdir,
        log,
        main=Line(config.experiment),
        title=describe(config),
        training=_Sparse(config),
        levels=0,
        # Only fixed layers name layers or can make the budget unreachable (`densities`).
        check=_check_layer_options(config)
        if config.sparse.dense_layers or config.sparse.custom_sparsity
        else None,
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
