"""Experiment runner: configs, the registry of kinds, run store, level loop, results.

`python -m tf_lottery.main --config=configs/<name>.py --workdir=<dir>` is
the command line; `registry.run(config, workdir)` is the same in Python
(`run_experiment` runs the `lottery` and `oneshot` kinds).
"""

from tf_lottery.experiments.kinds.lottery import run_experiment
from tf_lottery.experiments.schema import defaults, validate

__all__ = ["defaults", "run_experiment", "validate"]
