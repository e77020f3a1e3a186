"""The package's layer table (CONTRIBUTING.md, "The package's layers"), shared by the layering tests.

`ALLOWED` maps each unit (first component under `tf_lottery/`) to the units it may import;
`FACADE` is what the public facade (`tf_lottery/__init__.py`) may import.
"""

from __future__ import annotations

_LIBRARY_BASE = {"_keras_compat", "version", "utils"}
# Unit (first component under tf_lottery/) -> units it may import.
ALLOWED = {
    "_keras_compat": set(),
    "version": set(),
    "utils": {"_keras_compat", "version"},
    "core": _LIBRARY_BASE,
    "pruning": _LIBRARY_BASE | {"core"},
    "lottery": _LIBRARY_BASE | {"core", "pruning"},
    "sparse_training": _LIBRARY_BASE | {"core", "pruning"},
    "distillation": _LIBRARY_BASE | {"core"},
    "export": _LIBRARY_BASE | {"core"},
    "data": _LIBRARY_BASE,
    "models": _LIBRARY_BASE,
    # The public data helpers (`from tf_lottery.datasets import mnist1d`): outside the facade.
    "datasets": _LIBRARY_BASE | {"data"},
    "experiments": _LIBRARY_BASE
    | {"core", "pruning", "lottery", "sparse_training", "distillation", "export", "data", "models"},
    "cli": _LIBRARY_BASE
    | {"core", "pruning", "lottery", "sparse_training", "distillation", "export", "data", "models"}
    | {"experiments"},
    "main": {"cli"},
    "__main__": {"cli"},
}
# What the public facade (`tf_lottery/__init__.py`) may import: the Keras library only.
FACADE = _LIBRARY_BASE | {"core", "pruning", "lottery", "sparse_training", "distillation", "export"}
