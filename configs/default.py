"""The default experiment (what `python -m tf_lottery.main` runs with no flags).

See `tf_lottery/experiments/default_config.py` for what it reproduces, the
expected result and runtime. It lives inside the package so that the no-flag
command works from any directory and from an installed wheel.

Command:

    python -m tf_lottery.main --config=configs/default.py --workdir=/tmp/tf_lottery
"""

from tf_lottery.experiments.default_config import get_config

__all__ = ["get_config"]
