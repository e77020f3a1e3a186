"""The `lottery` and `oneshot` kinds: IMP (or one-shot pruning) and its controls.

`lottery` is iterative magnitude pruning (Frankle & Carbin 2019): level k
prunes the network level k-1 trained and restarts it according to
`config.pruning.retrain`; `oneshot` prunes the dense network of level 0 to
IMP level k's sparsity in one step (the schedules of `level_start.py`, which
this module plugs into the loop). Both run through the one level loop
(`tf_lottery.experiments.level_loop`) with the main line `"ticket"` and the
controls of `config.run.branches` (`controls.py`).

Example:

```python
from tf_lottery.experiments.default_config import get_config
from tf_lottery.experiments.kinds.lottery import run_experiment

summary = run_experiment(get_config("smoke"), "/tmp/runs")
print(summary["table"])
```
"""

from __future__ import annotations

import ml_collections

from tf_lottery.experiments import registry, schema
from tf_lottery.experiments.level_loop import Line, Replicate
from tf_lottery.experiments.level_start import IterativePruning, OneShotPruning
from tf_lottery.experiments.runner import run_levels

__all__ = ["Replicate", "describe", "run_experiment"]


# How each kind prunes a level's start: from the level before, or the dense network in one shot.
_STARTS = {"lottery": IterativePruning, "oneshot": OneShotPruning}


def describe(config: ml_collections.ConfigDict) -> str:
    kind = "IMP" if config.experiment == "lottery" else "one-shot pruning"
    return (
        f"{kind} of {config.model.name} on {config.dataset.name}: {config.pruning.scope} pruning "
        f"{config.pruning.rate:.0%}/round"
        + (f" ({config.pruning.layer_rates})" if config.pruning.layer_rates else "")
        + (f" in {config.pruning.structure} blocks" if config.pruning.get("structure", "") else "")
        + f", retrain={config.pruning.retrain}, rewind to {config.pruning.rewind_to}"
    )


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs (or resumes) a `lottery` or `oneshot` config under `workdir` (see `runner.run_levels`)."""
    schema.validate(config)
    starts = _STARTS[config.experiment](config.pruning)
    return run_levels(config, workdir, log, main=Line("ticket"), title=describe(config), starts=starts)


def _validate(config: ml_collections.ConfigDict) -> None:
    schema.validate(config)
    if config.experiment not in ("lottery", "oneshot"):
        raise ValueError(
            f"Invalid value for `config.experiment`: expected 'lottery' or 'oneshot' for this runner. "
            f"Received: experiment={config.experiment!r}."
        )


for _name, _summary in (
    ("lottery", "iterative magnitude pruning (IMP) with rewinding, and its controls as branches"),
    ("oneshot", "one-shot pruning of the dense network to each IMP level's sparsity, with controls"),
):
    registry.register(
        registry.Kind(
            name=_name, run=run_experiment, defaults=schema.defaults, validate=_validate, summary=_summary
        )
    )
