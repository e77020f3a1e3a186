"""What the command says about itself without loading TensorFlow: `--help`, and where configs are.

`tf_lottery --help` is answered from this module alone (standard library only):
the experiment kinds come from `KINDS`, a table that `tests/cli/test_usage.py`
checks against `tf_lottery.experiments.registry` (importing the kinds loads
TensorFlow, which is what `--help` must not wait for), and the shipped
configs are read as source (`ast`), not imported.

Shipped configs live in the repository's `configs/` folder; a wheel carries
them as the package `tf_lottery.configs` (see `package_dir` in setup.py), so
`--config=<name>[:<variant>]` finds one in a checkout and after a pip install.
"""

from __future__ import annotations

import ast
import os
import pathlib

# `config.experiment` -> one line (each kind's `registry.Kind.summary`; kept equal by a test).
KINDS = {
    "lottery": "iterative magnitude pruning (IMP) with rewinding, and its controls as branches",
    "oneshot": "one-shot pruning of the dense network to each IMP level's sparsity, with controls",
    "gradual": "gradual magnitude pruning during one training, tfmot's polynomial schedule (Zhu & Gupta 2017)",
    "early_bird": "Early-Bird tickets: the mask drawn when it stops changing in dense training (You et al. 2020)",
    "rigl": "RigL: sparse from the start, masks rewired by weight magnitude and dense gradient (Evci et al. 2020)",
    "set": "SET: sparse from the start, masks rewired by weight magnitude and random growth (Mocanu et al. 2018)",
    "static": "static sparse training: a fixed random mask at a chosen sparsity and layer distribution",
    "kd_ticket": "IMP rewound to initialisation and retrained on the dense network's soft labels (Ma et al. 2021)",
    "kd_rewind": "IMP rewound to an early epoch and retrained on the dense network's soft labels (Ma et al. 2021)",
    "instability": "linear mode connectivity: error barriers between two copies trained from rewind points "
    "(Frankle et al. 2020)",
    "transfer": "ticket transfer: tickets found on source classes retrained on target classes",
}

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]


def config_folders() -> list[pathlib.Path]:
    """Where shipped configs are looked for: a checkout's `configs/`, then the installed package's."""
    folders = [_PACKAGE.parent / "configs", _PACKAGE / "configs"]
    return [folder for folder in folders if folder.is_dir()]


def shipped_configs() -> dict[str, pathlib.Path]:
    """Config name -> file, for every shipped config (the first folder of `config_folders` wins)."""
    found: dict[str, pathlib.Path] = {}
    for folder in config_folders():
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def resolve_config(value: str) -> str:
    """The `--config` value `path[:arg]` with a shipped config's name replaced by its file.

    A path that exists is kept as given; `lenet_mnist` or `lenet_mnist.py` (no folder) names a
    shipped config. Raises FileNotFoundError (its message for the user) when neither holds.
    """
    path, sep, arg = value.partition(":")
    if os.path.isfile(path):
        return value
    configs = shipped_configs()
    name = path[:-3] if path.endswith(".py") else path
    # `configs/lenet_mnist.py` from outside a checkout: the shipped file of that name.
    folder, base = os.path.split(name)
    if folder in ("", "configs") and base in configs:
        return f"{configs[base]}{sep}{arg}"
    raise FileNotFoundError(
        f"no config file {path!r} (looked in {os.getcwd()}). Pass the path of a config file, or the "
        f"name of a shipped config: {', '.join(configs)} (e.g. --config=lenet_mnist:smoke)."
    )


def _docstring_of_get_config(tree: ast.Module, path: pathlib.Path) -> str:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "get_config":
            return ast.get_docstring(node) or ""
    # `from tf_lottery.x import get_config`: read it where it is defined.
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tf_lottery."):
            if any(alias.name == "get_config" and alias.asname is None for alias in node.names):
                source = _PACKAGE.parent.joinpath(*node.module.split(".")).with_suffix(".py")
                if source.is_file():
                    return _docstring_of_get_config(ast.parse(source.read_text()), source)
    return ""


def describe_config(path: pathlib.Path) -> tuple[str, str]:
    """A config file's first docstring line and its `get_config` docstring (its variants)."""
    tree = ast.parse(path.read_text())
    summary = (ast.get_docstring(tree) or "").strip().splitlines()
    variants = " ".join(_docstring_of_get_config(tree, path).split())
    return (summary[0] if summary else ""), variants


def text(program: str = "tf_lottery") -> str:
    """The whole `--help` text."""
    width = max(len(name) for name in KINDS)
    kinds = "\n".join(f"  {name:<{width}}  {summary}" for name, summary in KINDS.items())
    configs = []
    for name, path in shipped_configs().items():
        summary, variants = describe_config(path)
        configs.append(f"  {name}: {summary}")
        if variants:
            configs.append(f"      {variants}")
    folders = " and ".join(str(folder) for folder in config_folders()) or "(none found)"
    return f"""\
usage: {program} [--config=<config>[:<variant>]] [--workdir=<dir>] [--config.<group>.<key>=<value> ...]
                  [--print_config] [--progress=auto|on|off] [--threads=N] [--verbosity=N] [--version]

Runs (or resumes) a lottery-ticket experiment described by a config file. With no flags it runs the
default: IMP on MNIST-1D with the random-reinit control (a few minutes on 2 CPU cores).

Experiment kinds (`--config.experiment`, usually set by the config):
{kinds}

Shipped configs (`--config=<name>[:<variant>]`, e.g. `--config=lenet_mnist:smoke`; from {folders}):
{chr(10).join(configs)}
  Any other config file: `--config=path/to/my_config.py[:<variant>]` (a `get_config(arg=None)` that
  returns an ml_collections.ConfigDict; start from `tf_lottery.experiments.schema.defaults()`).

Config keys:
  --print_config                   print every key of the resolved config with its value and meaning,
                                   then exit (nothing runs): `{program} --config=lenet_mnist --print_config`
  --config.<group>.<key>=<value>   set any key, e.g. `--config.train.lr=0.01 --config.run.levels=3`;
                                   a key that does not exist is refused with the closest known key.

Workdir and resuming:
  --workdir=<dir>  the run store (default: <tmp>/tf_lottery_runs-<user>; a local path or any tf.io.gfile path).
  A run lives in <workdir>/<kind>/<hash>/, the hash naming the options that differ from the defaults
  (not `run.*`, which never changes a result): the same command finds the same run, reuses every
  finished level (`metrics.json` written) and resumes an interrupted level from its last checkpoint;
  changing a hashed option starts a new run beside it. Results: <run>/results/ (rounds.csv, plots).

More: `{program} --helpfull` (every flag), docs/index.md (the guide, by task), configs' docstrings.
"""
