"""How a level's start is set: the pruning schedule a kind plugs into the level loop.

Level 0 is dense, at initialisation. Level k >= 1 of the main line loads a
trained network (its *source level*), prunes it and restarts it according
to `config.pruning.retrain`; the kind decides which network and how far:

- `IterativePruning` (the `lottery` kind, and every arm): IMP. Level k
  prunes the network that level k-1 trained by `config.pruning.rate` of its
  surviving weights (Frankle & Carbin 2019). An arm (a line of its own IMP)
  always prunes so, from its own level before.
- `OneShotPruning` (the `oneshot` kind): level k prunes the dense network of
  level 0 in one step to IMP level k's sparsity, `1 - (1 - rate)^k`.

Both read only the `config.pruning` group and score with
`config.pruning.scorer` (`scorer`): `"magnitude"` (the default), `"random"`
(drawn from the replicate's seed and the level), and under
`structure="channels"`/`"heads"` the unit scorers `"l1"`, `"l2"` and
`"bn_gamma"` (see `tf_lottery.pruning.units_pruning`).

Example:

```python
from tf_lottery.experiments.level_start import OneShotPruning

schedule = OneShotPruning(config.pruning)
schedule.source_level(3)  # 0: every level prunes the dense network
schedule.prune(model, level=3, seed=0)  # to 1 - 0.8**3 of the weights
```
"""

from __future__ import annotations

import keras
import ml_collections

from tf_lottery.core.walk import dense_masks, set_masks
from tf_lottery.experiments.kinds import controls
from tf_lottery.experiments.level_context import LevelContext
from tf_lottery.experiments.schema import parse_rates
from tf_lottery.lottery.rewind import reset_for_retrain
from tf_lottery.pruning import scoring
from tf_lottery.pruning.pruner import prune
from tf_lottery.utils import failpoints

# The salt of the random scorer's seed (a level's restart draws with salt 1).
_RANDOM_SCORES = 2


def scorer(name: str, seed: int, level: int):
    """What `prune(scorer=...)` gets for `config.pruning.scorer` at `level` of a replicate seeded `seed`.

    `"random"` draws fresh scores per replicate and level; every other name
    is passed on as it is (resolved by `tf_lottery.pruning.pruner.prune`).
    """
    if name == "random":
        return scoring.RandomScorer(controls.derive_seed(seed, level, _RANDOM_SCORES))
    return name


class IterativePruning:
    """IMP: level k prunes level k-1's trained network by `pruning.rate`.

    Args:
        pruning: ConfigDict. The run's `config.pruning` group (`rate`,
            `scope`, `layer_rates`, `structure`, `scorer`).
    """

    def __init__(self, pruning: ml_collections.ConfigDict):
        self.pruning = pruning
        self.layer_rates = parse_rates(pruning.layer_rates)
        self.structure = pruning.get("structure", "") or None
        self.scorer = pruning.get("scorer", "magnitude")

    def source_level(self, level: int) -> int:
        """The level whose trained network level `level` (>= 1) is pruned from."""
        return level - 1

    def start(self, context: LevelContext, level: int) -> None:
        """Sets the model to the main line's level `level` start.

        Level 0: dense, at initialisation. Level k >= 1: the source level's
        trained network, pruned (`prune`), restarted by `pruning.retrain`
        from the restart point (`tf_lottery.lottery.rewind.reset_for_retrain`).
        """
        model = context.model
        if level == 0:
            set_masks(model, dense_masks(model))
            reset_for_retrain(model, "rewind", context.initial)
            return
        source = self.source_level(level)
        context.load_end(source)
        self.prune(model, level, context.seed)
        failpoints.reach("after_prune")
        retrain = self.pruning.retrain
        reset_for_retrain(
            model,
            retrain,
            context.restart_point(),
            # The weights are the loaded end of `source`; its optimizer state is in the checkpoint.
            trained=context.final_state(source) if retrain == "finetune" else None,
            seed=controls.derive_seed(context.seed, level, 1),
        )

    def start_arm(self, context: LevelContext, line, level: int) -> None:
        """An arm's level `level` (>= 1): its own level before (the dense network at 1), pruned by IMP and rewound."""
        context.load_end(level - 1, line.name if level > 1 else None)
        IterativePruning.prune(self, context.model, level, context.seed)
        failpoints.reach("after_prune")
        reset_for_retrain(context.model, "rewind", context.restart_point(line))

    def prune(self, model: keras.Model, level: int, seed: int) -> None:
        """Prunes `model`, set to the source level's end, to level `level`'s masks."""
        pruning = self.pruning
        prune(
            model,
            pruning.rate,
            scope=pruning.scope,
            layer_rates=self.layer_rates,
            structure=self.structure,
            scorer=scorer(self.scorer, seed, level),
        )


class OneShotPruning(IterativePruning):
    """One-shot pruning: level k prunes level 0's dense network to IMP level k's sparsity."""

    def source_level(self, level: int) -> int:
        return 0

    def prune(self, model: keras.Model, level: int, seed: int) -> None:
        pruning = self.pruning
        set_masks(model, dense_masks(model))
        target = 1.0 - (1.0 - pruning.rate) ** level
        rates = {p: 1.0 - (1.0 - r) ** level for p, r in self.layer_rates.items()}
        prune(
            model,
            target_sparsity=target,
            scope=pruning.scope,
            layer_rates=rates,
            structure=self.structure,
            scorer=scorer(self.scorer, seed, level),
        )
