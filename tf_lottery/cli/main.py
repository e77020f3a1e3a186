"""Lottery-ticket experiments from a config file.

    python -m tf_lottery.main --config=configs/<name>.py[:smoke] --workdir=<dir> [--config.<key>=<value> ...]

(`--help` is answered by `tf_lottery.cli.command` from `tf_lottery.cli.usage`, without TensorFlow.)

With no flags, runs the default: IMP on MNIST-1D with the random-reinit
control (a few minutes on 2 CPU cores), into <tmp>/tf_lottery_runs-<user>. Finished
rounds are reused and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import tempfile

from absl import app, flags
from ml_collections import config_flags

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "default_config.py"
)


def _user() -> str:
    """The user's name for the default workdir (the uid where no name is known)."""
    try:
        import getpass

        name = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container's uid): fall back to the uid
        name = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "user"


# Per user: one machine-wide folder showed each user the others' finished runs (and let one
# user's run resume from another's files). Not `tf_lottery`: a folder named after the package
# in the working directory would shadow an editable install of it.
DEFAULT_WORKDIR = os.path.join(tempfile.gettempdir(), f"tf_lottery_runs-{_user()}")

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    DEFAULT_CONFIG,
    "Experiment config file `configs/<name>.py`, optionally `:<arg>` (e.g. `:smoke`); any value "
    "can be overridden as `--config.train.lr=0.01`.",
    # Lets `--config.model.<option>` set any option of the model builder; every
    # other key is checked by `schema.validate`, model options by the builder.
    lock_config=False,
    accept_new_attributes=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", DEFAULT_WORKDIR, "Root directory of the run store (a local path or any tf.io.gfile path)."
)
_THREADS = flags.DEFINE_integer(
    "threads", 0, "TensorFlow's intra- and inter-op thread pools (0: TensorFlow's default, every core)."
)
# Answered by `tf_lottery.cli.command.run` before this module is imported; defined so that
# `--helpfull` lists it.
flags.DEFINE_bool("version", False, "Print the package version and exit (without loading TensorFlow).")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config",
    False,
    "Print every key of the resolved config (file, variant and --config.* overrides) with its value "
    "and meaning, then exit without running.",
)
_PROGRESS = flags.DEFINE_enum(
    "progress",
    "auto",
    ["auto", "on", "off"],
    "A progress bar with the ETA of the whole run (every level, line and branch) on stderr: "
    "`auto` when stderr is a terminal, `on` also when it is not (a line every 30 s), `off`.",
)


def set_process_switches(config) -> None:
    """The process-wide switches a run asks for; only the command line sets them.

    `config.run.deterministic` turns on TensorFlow's op determinism, so a
    resumed run is bit-identical to an uninterrupted one (it also makes
    Keras compile without XLA); `config.run.strategy` `multi_worker` and
    `tpu` connect to the cluster before any op runs; `--threads` sizes
    TensorFlow's thread pools. Library functions never change global state.
    """
    if _THREADS.value:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
        tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
    run = config.get("run", {})
    if run.get("deterministic", False):
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if run.get("strategy") in ("multi_worker", "tpu"):
        # Both must exist before TensorFlow runs its first op (data loading does),
        # and a missing TPU should fail before the run store is written.
        from tf_lottery.experiments.strategy import make_strategy

        make_strategy(run.strategy)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}: use --config and --workdir.")
    if _THREADS.value < 0:  # before the registry's imports (TensorFlow): answered in a second
        raise app.UsageError(
            f"Invalid value for --threads: expected an int >= 0. Received: {_THREADS.value}."
        )
    from tf_lottery.cli import stderr_filter
    from tf_lottery.experiments import registry
    from tf_lottery.experiments.progress import RunProgress

    global _PARSED
    _PARSED = True
    config = _CONFIG.value
    try:
        kind = registry.validate(config)
        if _PRINT_CONFIG.value:
            from tf_lottery.cli import config_listing

            print(config_listing.listing(config), end="")
            return
        set_process_switches(config)
        # What is imported by now (TensorFlow, Keras, the package) lives as long as the process:
        # the cyclic collector's full passes skip it from here on (each one walked ~370,000
        # objects, about a second of a 20-second smoke run). Reference counting still frees it.
        gc.freeze()
        with RunProgress(_PROGRESS.value, stream=stderr_filter.terminal()) as log:
            kind.run(config, _WORKDIR.value, log=log)
    except (ValueError, FloatingPointError, FileNotFoundError) as error:
        if flags.FLAGS.verbosity >= 1:
            raise
        sys.exit(f"tf_lottery: error: {error}\n(run with --verbosity=1 for the traceback)")
    except OSError as error:
        # A full disk, an unwritable or missing --workdir, missing data: every
        # artifact is written atomically, so what the store holds is intact.
        if flags.FLAGS.verbosity >= 1:
            raise
        sys.exit(
            f"tf_lottery: error: {error}\nThe run store under --workdir={_WORKDIR.value} is unchanged; "
            "fix the cause (free space, permissions, another --workdir) and run the same command "
            "again to resume."
        )


# Whether absl parsed the flags and called `main` (a KeyError before it is a misspelt key).
_PARSED = False


def unknown_key_message(argv: list[str], error: KeyError) -> str:
    """One line for ml_collections' KeyError on `--config.<a>.<b>=...` whose `<a>` does not exist."""
    text = str(error.args[0]) if error.args else ""
    missing = text.splitlines()[0].strip("'\"") if text else ""
    flag = next(
        (arg for arg in argv if arg.startswith("--config.") and missing in arg.split("=")[0].split(".")), ""
    )
    path = flag.split("=")[0][len("--config.") :]
    parts = path.split(".")
    key = ".".join(parts[: parts.index(missing) + 1]) if missing in parts else missing
    suggestion = re.search(r'Did you mean "([^"]+)" instead of', text)
    hint = ""
    if suggestion:
        hint = f" Did you mean `config.{key.rpartition('.')[0] + '.' if '.' in key else ''}{suggestion.group(1)}`?"
    return f"Unknown config key `config.{key}` in {flag or 'a --config.* flag'}.{hint}"


def run_app(argv: list[str]) -> None:
    """Parses `argv` with absl and runs `main` (see `tf_lottery.cli.command.run`)."""
    try:
        app.run(main, argv=argv)
    except KeyError as error:
        if _PARSED:
            raise
        # `--config.trian.lr=1`: ml_collections fails while absl parses the flags.
        sys.exit(f"tf_lottery: error: {unknown_key_message(argv, error)}")
