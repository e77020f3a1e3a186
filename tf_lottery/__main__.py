"""`python -m tf_lottery`: the package version, and a pointer to the experiment runner.

Deliberately light: it imports only `tf_lottery.version` itself (no TensorFlow here).
"""

from __future__ import annotations

import argparse
import sys

from tf_lottery.version import __version__

_RUNNER = "python -m tf_lottery.main"


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser for `python -m tf_lottery`."""
    parser = argparse.ArgumentParser(
        prog="python -m tf_lottery",
        description=(
            "tf_lottery: lottery-ticket pruning for Keras 3 / TensorFlow. "
            f"Experiments are run with `{_RUNNER}`."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"tf_lottery {__version__}",
        help="print the package version and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses `argv`; with no arguments prints a short usage and returns 0."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_usage()
    print(f"tf_lottery {__version__}: the experiment runner is `{_RUNNER}` (see `{_RUNNER} --help`).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
