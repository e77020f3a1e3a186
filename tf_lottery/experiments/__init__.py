"""Experiment runner: configs, the registry of kinds, run store, level loop, results.

`python -m tf_lottery.main --config=configs/<name>.py --workdir=<dir>` is
the command line; `registry.run(config, workdir)` is the same in Python
(`run_experiment` runs the `lottery` and `oneshot` kinds).

In a command-line process `run_experiment` is imported when first used: a
config file imports `schema` through this package, and should load without
TensorFlow, so that the command line answers a misspelt flag in about a
second. Any other import of this package imports it at once.
"""

import os as _os
import sys as _sys

from tf_lottery.experiments.schema import defaults, validate

__all__ = ["defaults", "run_experiment", "validate"]


def _command_line() -> bool:
    """Whether this process is the command line: `python -m tf_lottery.main` or the console script."""
    argv0 = _sys.argv[0] if _sys.argv else ""
    main = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "main.py")
    return _os.path.basename(argv0) in ("tf_lottery", "tf_lottery.exe") or (
        bool(argv0) and _os.path.abspath(argv0) == main
    )


if not _command_line():
    from tf_lottery.experiments.kinds.lottery import run_experiment


def __getattr__(name: str):
    if name == "run_experiment":
        from tf_lottery.experiments.kinds.lottery import run_experiment

        return run_experiment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
