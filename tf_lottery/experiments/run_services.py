"""What a replicate's plug-ins and kinds may use of a run: its services, not its config.

The level loop builds one `RunServices` per replicate and hands it to what
it plugs in (the network, pretraining, a kind's training and analyses):
where files go (`store`), the data, the log, the progress bar, the
`tf.distribute` strategy, and the replicate's identity (its index and
seeds). A plug-in reads its own config group, given when it was made; it
never needs the whole config to reach these.

Example:

```python
services = replicate.services
path = services.store.level_dir(services.replicate, 0)
services.log(f"replicate {services.replicate}: seed {services.seed}")
```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class RunServices:
    """One replicate's services.

    Attributes:
        store: `run_store.RunStore`. Where the run's files are written.
        data: The run's data pipeline (see `tf_lottery.data.registry`).
        log: Callable taking a str, for progress lines.
        progress: `progress.RunProgress` or None: told of every data step
            done (`advance(steps, trained)`).
        strategy: tf.distribute.Strategy. Where models and optimizers are
            built.
        replicate: int. The replicate's index.
        seed: int. Its initialisation seed (`config.seed + replicate`).
        data_seed: int. Its data order (`config.train.data_order_seed`, or
            `seed`).
    """

    store: object
    data: object
    log: Callable[[str], None]
    progress: object
    strategy: tf.distribute.Strategy
    replicate: int
    seed: int
    data_seed: int

    def advance(self, steps: int, trained: bool = True) -> None:
        """Tells the progress bar (if any) that `steps` data steps are done (or read back)."""
        if self.progress is not None:
            self.progress.advance(steps, trained)
