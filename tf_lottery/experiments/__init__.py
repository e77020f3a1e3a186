"""Experiment runner: configs, the registry of kinds, run store, level loop, results.

`python -m tf_lottery.main --config=configs/<name>.py --workdir=<dir>` is
the command line; `registry.run(config, workdir)` is the same in Python
(`run_experiment` runs the `lottery` and `oneshot` kinds).

In a command-line process `run_experiment` is imported when first used: a
config file imports `schema` through this package, and should load without
TensorFlow, so that the command line answers a flag naming a config group
that does not exist (or a bad process flag) in about a second; a misspelt
option inside a group waits for the kinds, which declare their options. Any
other import of this package imports it at once.
"""

from tf_lottery.experiments.schema import defaults, validate
from tf_lottery.utils.command_line import started_as_command as _started_as_command

__all__ = ["defaults", "run_experiment", "validate"]

if not _started_as_command():
    from tf_lottery.experiments.kinds.lottery import run_experiment


def __getattr__(name: str):
    if name == "run_experiment":
        from tf_lottery.experiments.kinds.lottery import run_experiment

        return run_experiment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
