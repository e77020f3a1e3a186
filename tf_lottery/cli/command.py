"""The `tf_lottery` command (also `python -m tf_lottery.main`): one entry point for both.

`--version` and `--help` are answered here, before absl, ml_collections or
TensorFlow is imported (the package's public names are imported lazily in a
command-line process, see `tf_lottery/__init__.py`; the help text is
`tf_lottery.cli.usage`), and `--config` is resolved here: a shipped config's
name becomes its file, a missing file is one line. Everything else goes to the absl app
in `tf_lottery.cli.main`, with TensorFlow's C++ start-up lines hidden unless
`--verbosity` is 1 or more (`tf_lottery.cli.stderr_filter`).
"""

from __future__ import annotations

import os
import sys

from tf_lottery.version import __version__

# What the `experiments` extra installs that the command imports (see setup.py).
_EXPERIMENT_MODULES = (
    "absl",
    "ml_collections",
    "tensorflow_datasets",
    "mnist1d",
    "matplotlib",
    "tensorboard",
)


def asks_version(args: list[str]) -> bool:
    """Whether the command-line arguments `args` (without the program name) ask for the version."""
    return any(arg in ("--version", "--version=true", "--version=True") for arg in args)


def asks_help(args: list[str]) -> bool:
    """Whether `args` ask for the usage (`--help`, `-h`, `--helpshort`, `-?`); `--helpfull` goes to absl."""
    return any(arg in ("--help", "-h", "--helpshort", "-?", "--help=true", "--help=True") for arg in args)


def resolve_config_flag(args: list[str]) -> list[str]:
    """`args` with the `--config` value resolved by `usage.resolve_config` (raises FileNotFoundError)."""
    from tf_lottery.cli import usage

    resolved = list(args)
    for index, arg in enumerate(resolved):
        if arg.startswith("--config="):
            resolved[index] = "--config=" + usage.resolve_config(arg[len("--config=") :])
        elif arg == "--config" and index + 1 < len(resolved):
            resolved[index + 1] = usage.resolve_config(resolved[index + 1])
    return resolved


def requested_verbosity(args: list[str]) -> int:
    """absl's `--verbosity` / `-v` as given in `args` (0 when absent or not an int)."""
    value = None
    for index, arg in enumerate(args):
        for name in ("--verbosity", "-v"):
            if arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
            elif arg == name and index + 1 < len(args):
                value = args[index + 1]
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def run(argv: list[str] | None = None) -> None:
    """Runs the command line with `argv` (default: `sys.argv`)."""
    argv = list(sys.argv if argv is None else argv)
    if asks_version(argv[1:]):
        print(f"tf_lottery {__version__}")
        return
    if asks_help(argv[1:]):
        from tf_lottery.cli import usage

        print(usage.text(), end="")
        return
    try:
        argv[1:] = resolve_config_flag(argv[1:])
    except FileNotFoundError as error:
        sys.exit(f"tf_lottery: error: {error}")
    from tf_lottery.cli import stderr_filter

    quiet = requested_verbosity(argv[1:]) < 1
    if quiet:
        # TensorFlow's own C++ log level (errors only) once its logging is initialised;
        # read when TensorFlow loads, so set here, before anything imports it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Importing the app loads TensorFlow already (its --config default is a config file).
    with stderr_filter.without_startup_noise(enabled=quiet):
        try:
            from tf_lottery.cli import main as app
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] not in _EXPERIMENT_MODULES:
                raise
            sys.exit(
                "tf_lottery: error: the experiment runner needs the `experiments` extra (module "
                f"{error.name!r} is missing). Install it with: pip install 'tf_lottery[experiments]'"
            )
        app.run_app(argv)
