"""What a kind's plug-ins see of a replicate: its model, its stored states and the run's services.

The level loop (`level_loop.Replicate`) hands one `LevelContext` to what a
kind plugs in: the level starts (`level_start.py`), the `Training` hooks of
the kinds that act during training, the controls (`kinds/controls.py`) and
the kinds' analyses (`instability`, `transfer`). It is the replicate's public
face: the model being trained, the states level 0 recorded, the finished
levels' files, and the run's services (`run_services.RunServices`: store,
data, log, progress, strategy, the replicate's index and seeds). It holds
no config: a plug-in is made with the config group it reads.

Example:

```python
def start(self, context: LevelContext, level: int) -> bool:
    context.load_end(level - 1)  # the network the level before trained
    tfl.prune(context.model, rate=self.rate)
    tfl.reset_for_retrain(context.model, "rewind", context.restart_point())
    return True
```
"""

from __future__ import annotations

import keras

from tf_lottery.experiments.run_services import RunServices
from tf_lottery.lottery.rewind import Snapshot


class LevelContext:
    """A replicate as its plug-ins see it (built by the level loop; read-only for them).

    Attributes:
        services: `RunServices`. The run's store, data, log, progress,
            strategy, and the replicate's index and seeds.
        model: keras.Model. The replicate's prunable, compiled model; a
            plug-in sets its masks and weights.
        initial: `Snapshot`. The state at initialisation (step 0; the
            pretrained network when the run pretrains).
        main: `level_loop.Line`. The main line.
        steps_per_epoch: int. Data steps per epoch at the run's batch size.
        total_steps: int. The data steps of a level's training.
        rewind_step: int. The data step of `config.pruning.rewind_to`.
    """

    def __init__(self, replicate):
        self._replicate = replicate
        self.services: RunServices = replicate.services
        self.main = replicate.main
        self.steps_per_epoch: int = replicate.steps_per_epoch
        self.total_steps: int = replicate.total_steps
        self.rewind_step: int = replicate.rewind_step

    @property
    def model(self) -> keras.Model:
        return self._replicate.model

    @property
    def initial(self) -> Snapshot:
        return self._replicate.initial

    # The services a plug-in reaches most often.
    @property
    def store(self):
        """`run_store.RunStore`: where the run's files are written."""
        return self.services.store

    @property
    def data(self):
        """The run's data pipeline."""
        return self.services.data

    @property
    def replicate(self) -> int:
        """The replicate's index."""
        return self.services.replicate

    @property
    def seed(self) -> int:
        """The replicate's initialisation seed (`config.seed + replicate`)."""
        return self.services.seed

    def level_dir(self, level: int, branch: str | None = None) -> str:
        """The directory of level `level` of the main line, or of `branch` (an arm or a control)."""
        return self._replicate.level_dir(level, branch)

    def source_level(self, level: int) -> int:
        """The level whose trained network level `level` of the main line is pruned from."""
        return self._replicate.source_level(level)

    def restart_step(self, line=None) -> int:
        """The data step where levels >= 1 of `line` (default: the main line) restart."""
        return self._replicate.restart_step(line)

    def restart_point(self, line=None) -> Snapshot:
        """The state where levels >= 1 of `line` (default: the main line and its controls) restart."""
        return self._replicate.restart_point(line)

    def rewind_snapshot(self, step: int | None = None) -> Snapshot:
        """The state level 0 recorded at data step `step` (default: the rewind point)."""
        return self._replicate.rewind_snapshot(step)

    def load_end(self, level: int, branch: str | None = None) -> None:
        """Sets the model's masks and weights to the end of a finished level."""
        self._replicate.load_end(level, branch)

    def final_state(self, level: int) -> Snapshot:
        """The trained state (weights and optimizer) of finished level `level` of the main line."""
        return self._replicate.final_state(level)

    def level_masks(self, level: int, branch: str | None = None) -> list:
        """The ticket masks of level `level` of the main line or of `branch`."""
        return self._replicate.level_masks(level, branch)

    def train_from(self, directory: str, start: int, seed: int) -> dict:
        """Trains the model, as set, from data step `start` to the end with data order `seed` (resumable)."""
        return self._replicate.train_from(directory, start, seed)
