"""The registry of experiment kinds: `config.experiment` name -> how to run it.

A kind is registered once, by the module that implements it
(`tf_lottery/experiments/kinds/<module>.py` calls `register`); the command
line and `run` look kinds up here, so an unknown name is answered with every
registered kind. Modules under `kinds/` are imported on the first lookup.

Example:

```python
from tf_lottery.experiments import registry

kind = registry.get("lottery")
config = kind.defaults()
config.run.levels = 2
summary = registry.run(config, "/tmp/runs")
```
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import ml_collections


@dataclass(frozen=True)
class Kind:
    """One experiment kind.

    Attributes:
        name: str. The value of `config.experiment`.
        run: `run(config, workdir, log) -> dict`. Runs (or resumes) every
            replicate; returns at least `root`, `rows`, `table`, `elapsed_s`.
        defaults: `defaults() -> ConfigDict`. Every option of the kind with
            its default (the runner's groups plus the kind's own).
        validate: `validate(config)`. Raises ValueError naming a bad option.
        summary: str. One line for `--help` and error messages.
    """

    name: str
    run: Callable[..., dict]
    defaults: Callable[[], ml_collections.ConfigDict]
    validate: Callable[[ml_collections.ConfigDict], None]
    summary: str


_KINDS: dict[str, Kind] = {}
_LOADED = False


def register(kind: Kind) -> Kind:
    """Adds `kind`; a second kind with the same name is refused."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing is not kind:
        raise ValueError(
            f"Experiment kind {kind.name!r} is registered twice ({existing.run} and {kind.run})."
        )
    _KINDS[kind.name] = kind
    return kind


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    from tf_lottery.experiments import kinds

    for module in pkgutil.iter_modules(kinds.__path__):
        importlib.import_module(f"{kinds.__name__}.{module.name}")
    _LOADED = True


def names() -> tuple[str, ...]:
    """Every registered kind, sorted."""
    _load()
    return tuple(sorted(_KINDS))


def get(name) -> Kind:
    """The kind called `name`; an unknown name's error lists every kind."""
    _load()
    if name not in _KINDS:
        raise ValueError(
            f"Invalid value for `config.experiment`: expected one of {names()}. Received: experiment={name!r}."
            + "".join(
                f" Did you mean {close!r}?" for close in difflib.get_close_matches(str(name), names(), n=1)
            )
        )
    return _KINDS[name]


def validate(config: ml_collections.ConfigDict) -> Kind:
    """Checks `config` with its kind's validation, then its keys against the kind's `defaults()`; returns the kind."""
    kind = get(config.get("experiment"))
    kind.validate(config)  # first: a kind's own messages are the more specific ones
    check_known_keys(config, kind.defaults())
    return kind


def check_known_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict) -> None:
    """Refuses a group or option that `reference` (the kind's defaults) does not have, with a did-you-mean.

    Every option of every group, the kind's own included, must be one the kind
    declares with its default: a run's name hashes only non-default values, so
    an undeclared option could neither be hashed against a default nor used.
    The `model` group is left to the model builder, which checks its keyword
    arguments.
    """

    def walk(node, known, prefix):
        for key in node.keys():
            name = f"{prefix}{key}"
            if key not in known:
                close = difflib.get_close_matches(key, list(known.keys()), n=1)
                hint = f" Did you mean `config.{prefix}{close[0]}`?" if close else ""
                group = f" of `config.{prefix[:-1]}`" if prefix else ""
                raise ValueError(
                    f"Unknown config key `config.{name}`.{hint} Known keys{group} for experiment "
                    f"{config.get('experiment')!r}: {sorted(known.keys())}."
                )
            if name == "model":
                continue
            if isinstance(known[key], ml_collections.ConfigDict):
                if not isinstance(node[key], ml_collections.ConfigDict):
                    raise ValueError(f"Invalid value for `config.{name}`: expected a group of options.")
                walk(node[key], known[key], name + ".")

    walk(config, reference, "")


def run(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Validates `config` and runs (or resumes) it under `workdir`."""
    return validate(config).run(config, workdir, log=log)
