"""KD tickets and KD-rewinding (Ma et al. 2021) as IMP experiment kinds.

Experiment kinds (`config.experiment`), each run through the one level loop
(`tf_lottery.experiments.level_loop`):

- `"kd_ticket"`: each IMP level prunes the network the previous level trained,
  rewinds it to initialisation and retrains it on the soft labels of the
  replicate's trained dense network (level 0, the teacher): the KD ticket.
- `"kd_rewind"`: the same, rewound to `config.pruning.rewind_to` (an early
  point) instead of initialisation: KD-rewinding.

The kind's own arm is the main line. `config.kd.arms` names the arms run
beside it, each with its own IMP from the shared dense network: `ticket`
(rewound to initialisation, hard labels), `rewind` (rewound to
`pruning.rewind_to`, hard labels), `kd_ticket`, `kd_rewind`; by default the
kind's baseline (`ticket` for `kd_ticket`, `rewind` for `kd_rewind`). Controls
(`config.run.branches`) train on the main line's masks, as for `lottery`.

With a deterministic pipeline (`dataset.augment=False`) the teacher's logits
are computed once and streamed with the data (`kd.cache_teacher_logits`);
with augmentation the teacher runs on every augmented batch.

    python -m tf_lottery.main --config=configs/kd_mnist1d_mlp.py --workdir=runs

Reference:
    Ma et al., "Good Students Play Big Lottery Better", 2021, arXiv:2101.03255.
"""

from __future__ import annotations

import copy

import ml_collections

from tf_lottery.experiments import registry
from tf_lottery.experiments.level_loop import Line
from tf_lottery.experiments.runner import run_levels
from tf_lottery.experiments.schema import fail as _fail

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
    config.run.branches = ""  # the arms are the comparison; controls can be added
    config.kd = ml_collections.ConfigDict()
    # Weight of the distillation term; the label cross-entropy gets 1 - weight.
    config.kd.weight = 0.9
    config.kd.temperature = 5.0
    # Comma-separated arms from ARMS run beside the kind's own; '' runs its baseline.
    config.kd.arms = ""
    # Stream the teacher's logits with the data (only without augmentation).
    config.kd.cache_teacher_logits = True
    return config


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
            "Missing config group `config.kd`: start the config from `tf_lottery.experiments.kinds.kd.kd_defaults()`."
        )
    weight, temperature = config.kd.weight, config.kd.temperature
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        _fail("kd.weight", "a float in [0, 1]", weight)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        _fail("kd.temperature", "a float > 0", temperature)
    arms_of(config)
    if config.pruning.retrain != "rewind":
        _fail(
            "pruning.retrain",
            "'rewind' for the KD kinds (each arm restarts as it defines)",
            config.pruning.retrain,
        )
    shared = copy.deepcopy(config)
    with shared.unlocked():
        del shared["kd"]
        shared.experiment = "lottery"
    schema.validate(shared)


def lines(config: ml_collections.ConfigDict) -> tuple[Line, tuple[Line, ...]]:
    """`(main line, other arms)` of a KD config, as the level loop runs them."""

    def line(arm: str) -> Line:
        late, distils = ARMS[arm]
        return Line(arm, from_init=not late, distil=distils)

    return line(config.experiment), tuple(line(a) for a in arms_of(config) if a != config.experiment)


def describe(config: ml_collections.ConfigDict) -> str:
    main, others = lines(config)
    return (
        f"{config.experiment} of {config.model.name} on {config.dataset.name}: {config.pruning.scope} "
        f"pruning {config.pruning.rate:.0%}/round, restart at "
        f"{'initialisation' if main.from_init else config.pruning.rewind_to}, kd_weight={config.kd.weight}, "
        f"T={config.kd.temperature}; arms beside it: {', '.join(a.name for a in others) or 'none'}"
    )


def run_kd_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) a `kd_ticket` / `kd_rewind` config under `workdir`.

    The run store, resuming, replicates and results are the level loop's
    (`runner.run_levels`): `<workdir>/<kind>/<hash>/replicate_<r>/round_<k>`
    for the kind's own arm, `branch_<arm>/round_<k>` for the others.
    """
    validate(config)
    main, others = lines(config)
    return run_levels(config, workdir, log, main=main, arms=others, title=describe(config))


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
