"""Experiment runner: configs, run store, IMP levels, controls, results.

`python -m tf_lottery.main --config=configs/<name>.py --workdir=<dir>` is
the command line; `run_experiment(config, workdir)` is the same in Python.
"""

from tf_lottery.experiments.experiment import run_experiment
from tf_lottery.experiments.schema import defaults, validate

__all__ = ["defaults", "run_experiment", "validate"]
