"""XLA in the runner: on by default (`config.run.jit_compile`), with a fallback that names the culprit.

Keras 3 compiles with XLA only where `jit_compile=True` is asked for
explicitly on a CPU-only machine, and its setter turns XLA off whenever
TensorFlow's op determinism is on (which the command line enables for
bit-identical resumes). The runner asks for XLA itself (`apply`):
TensorFlow compiles XLA clusters deterministically when op determinism is
required (it sets XLA's `xla_gpu_exclude_nondeterministic_ops` for them), and
an op that cannot be compiled (no XLA kernel, or no deterministic one) makes
the first step fail with an error before anything is updated. `fall_back`
recognises that error, turns XLA off for the model with one warning naming
the op and the layer, and the trainer runs the same chunk again without XLA:
nothing was trained by the failed call, so the run stays exact.

Layers that declare `supports_jit = False` (Keras' own flag) keep the model
off XLA from the start, with one warning naming them.

The multi-worker loop (`trainer._MultiWorkerLoop`) runs the model's
`train_step` under `strategy.run` in its own `tf.function`, without XLA.

Example:

```python
from tf_lottery.experiments import xla

model.compile(optimizer="adam", loss="mse")
xla.apply(model, True)  # True if the steps will be compiled with XLA
```

Reference:
    TensorFlow, "XLA: Optimizing Compiler for Machine Learning",
    https://www.tensorflow.org/xla.
"""

from __future__ import annotations

import re
import warnings

import keras
import tensorflow as tf

from tf_lottery import _keras_compat

__all__ = ["apply", "fall_back", "unsupported_layers"]

# XLA's message for a graph it cannot compile, e.g. "Detected unsupported operations when trying
# to compile graph __inference_one_step_on_data_258[] on XLA_CPU_JIT: PyFunc (No registered 'PyFunc'
# OpKernel ...){{node functional_1/odd_1/PyFunc}}".
_UNSUPPORTED = re.compile(
    r"Detected unsupported operations when trying to compile graph \S+ on (?P<device>\S+): "
    r"(?P<op>[\w.]+)(?:.*?\{\{node (?P<node>[^}]+)\}\})?",
    re.S,
)
# Other failures to compile a step with XLA (shapes that are not compile-time constants, ops
# without a deterministic XLA implementation). Errors at run time (out of memory, NaN checks)
# are not compile failures and are never caught.
_COMPILE_FAILURE = re.compile(
    r"XLA compilation requires|must be a compile-time constant|XLA_\w+_JIT|"
    r"xla_gpu_exclude_nondeterministic_ops|xla_gpu_deterministic_ops|"
    r"does not have a deterministic implementation",
)
_COMPILE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError)


def unsupported_layers(model: keras.Model) -> list[str]:
    """Names of `model`'s layers (at any depth) that declare `supports_jit = False`."""
    return [
        layer.name
        for layer in _keras_compat.flatten_layers(model)
        if not getattr(layer, "supports_jit", True)
    ]


def _layer_of(model: keras.Model, node: str) -> str | None:
    """The name of `model`'s layer whose name scope holds graph node `node`, if one matches.

    TensorFlow makes name scopes unique by appending `_<n>` (`dense_1` for a
    second `dense`), so a scope that is no layer's name is matched again
    without that suffix.
    """
    names = {layer.name for layer in _keras_compat.flatten_layers(model)}
    for scope in reversed(node.split("/")[:-1]):
        for candidate in (scope, re.sub(r"_\d+$", "", scope)):
            if candidate in names and candidate != model.name:
                return candidate
    return None


def apply(model: keras.Model, requested: bool) -> bool:
    """Compiles `model`'s steps with XLA if `requested` and every layer supports it.

    Call after `model.compile()`. Returns whether XLA is on. A layer that
    declares `supports_jit = False` keeps it off, with one warning naming it.
    """
    if requested:
        layers = unsupported_layers(model)
        if layers:
            warnings.warn(
                f"`config.run.jit_compile=True`, but layer(s) {layers} of model {model.name!r} "
                "declare `supports_jit = False`; training without XLA. Set "
                "--config.run.jit_compile=False to silence this.",
                stacklevel=2,
            )
            requested = False
    _keras_compat.set_jit_compile(model, requested)
    return bool(requested)


def fall_back(model: keras.Model, error: BaseException) -> bool:
    """Turns XLA off for `model` if `error` is XLA failing to compile its step; True if it did.

    The warning names the op and the layer (from the node's name) when XLA's
    message gives them. An error that is not a compile failure, or a model
    without XLA, returns False and the caller re-raises.
    """
    if not model.jit_compile or not isinstance(error, _COMPILE_ERRORS):
        return False
    message = str(error)
    match = _UNSUPPORTED.search(message)
    if match is None and not _COMPILE_FAILURE.search(message):
        return False
    if match is not None:
        node = match.group("node") or ""
        layer = _layer_of(model, node)
        where = f"op {match.group('op')!r}" + (f" in layer {layer!r}" if layer else "")
        where += f" (node {node!r})" if node else ""
    else:
        where = "the train step: " + message.strip().splitlines()[0][:300]
    warnings.warn(
        f"XLA cannot compile {where} of model {model.name!r}; training it without XLA from here on. "
        "Set --config.run.jit_compile=False to silence this.",
        stacklevel=2,
    )
    _keras_compat.set_jit_compile(model, False)
    return True
