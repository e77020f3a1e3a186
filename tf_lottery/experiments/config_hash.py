"""A run's identity: the hash of the options that differ from the defaults.

As in open_lth, the canonical description of a run leaves out every value
equal to its default and every option that does not change a result
(`schema.UNHASHED`: the number of levels, replicates, controls,
checkpointing, output). The defaults are `schema.defaults()` for the
runner's groups, the kind's own `defaults()` (from the registry) for the
kind's groups (`sparse`, `gradual`, `early_bird`, `kd`, ...), and the
builder's signature defaults for the model's keyword arguments. So adding an
option with a default later, to any group, keeps the names of existing runs,
and a run can be extended with more levels or controls in place.
"""

from __future__ import annotations

import hashlib
import json

import ml_collections

from tf_lottery.experiments import schema

_MISSING = object()


def flatten(tree: dict, prefix: str = "") -> dict:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _canonical(value):
    if isinstance(value, tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unhashed(key: str) -> bool:
    return any(key == group or key.startswith(group + ".") for group in schema.UNHASHED)


def kind_defaults(config: ml_collections.ConfigDict) -> dict:
    """`{dotted key: default}` of the options the config's kind adds to the runner's groups."""
    from tf_lottery.experiments import registry

    runner = flatten(schema.defaults().to_dict())
    kind = registry.get(config.get("experiment", schema.defaults().experiment))
    return {k: v for k, v in flatten(kind.defaults().to_dict()).items() if k not in runner}


def hparams(config: ml_collections.ConfigDict) -> dict:
    """The options that name the run: `{dotted key: value}` of non-defaults."""
    from tf_lottery.models import registry

    tree = config.to_dict()
    tree["model"] = dict(tree.get("model", {}))
    model_name = registry.canonical_name(tree["model"].get("name", schema.defaults().model.name))
    tree["model"]["name"] = model_name
    # The runner's defaults win for the runner's keys: a kind's `defaults()` may start from other
    # values (e.g. `run.levels = 0`), and runs are named against the runner's.
    reference = {**kind_defaults(config), **flatten(schema.defaults().to_dict())}
    builder_defaults = registry.builder_defaults(model_name)
    result = {}
    for key, value in sorted(flatten(tree).items()):
        if _unhashed(key):
            continue
        if key in reference:
            default = reference[key]
        elif key.startswith("model."):
            default = builder_defaults.get(key[len("model.") :], _MISSING)
        else:
            default = _MISSING
        if default is _MISSING or _canonical(value) != _canonical(default):
            result[key] = _canonical(value)
    return result


def canonical_string(config: ml_collections.ConfigDict) -> str:
    """Canonical JSON of `hparams(config)`: sorted keys, no whitespace."""
    return json.dumps(hparams(config), sort_keys=True, separators=(",", ":"))


def config_hash(config: ml_collections.ConfigDict) -> str:
    """16 hex digits of the SHA-256 of `canonical_string(config)`."""
    return hashlib.sha256(canonical_string(config).encode("utf-8")).hexdigest()[:16]
