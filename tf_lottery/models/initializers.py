"""open_lth's `model_init` and `batchnorm_init`: re-drawing a built model's initial weights.

`initialize(model, model_init=..., batchnorm_init=..., seed=...)` gives every
layer with a `kernel` (Dense, Conv, ..., the output layer included) a new
kernel initializer and draws its kernel from it, and gives every
BatchNormalization layer new `gamma`/`beta` initializers and values. The
layer attributes (`kernel_initializer`, `gamma_initializer`, ...) are set
too, so the random-reinitialisation control (`tfl.reinitialize`) draws from
the same distributions. Biases are left as the builder made them.

Kernel initializers, matching PyTorch's functions that open_lth calls
(untruncated normals; fans as in `keras.initializers.VarianceScaling`):

- `kaiming_normal`: N(0, 2 / fan_in) (`torch.nn.init.kaiming_normal_`).
- `kaiming_uniform`: U(-b, b), b = sqrt(6 / fan_in) (`kaiming_uniform_`).
- `glorot_normal`: N(0, 2 / (fan_in + fan_out)) (`xavier_normal_`).
- `glorot_uniform`: U(-b, b), b = sqrt(6 / (fan_in + fan_out)).
- `orthogonal`: a random orthogonal matrix, the kernel flattened to
  (fan_in, units); columns orthonormal when fan_in >= units (`orthogonal_`).

BatchNormalization (open_lth's `bn_initializers.py`): `uniform` (gamma ~
U[0, 1), beta = 0), `fixed` (1, 0; Keras' default), `oneone` (1, 1),
`positivenegative` (gamma ~ U[-1, 1), beta = 0).

Example:

```python
model = build_model("resnet20", (32, 32, 3), 10)
initialize(model, model_init="kaiming_normal", batchnorm_init="uniform", seed=0)
```

Reference:
    He et al., "Delving Deep into Rectifiers", ICCV 2015, arXiv:1502.01852;
    Glorot & Bengio, AISTATS 2010; Saxe et al., ICLR 2014, arXiv:1312.6120
    (orthogonal); Frankle et al., "Training BatchNorm and Only BatchNorm",
    ICLR 2021, arXiv:2003.00152 (the BatchNorm initializers).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import keras
import numpy as np

MODEL_INITS = ("kaiming_normal", "kaiming_uniform", "glorot_normal", "glorot_uniform", "orthogonal")
BATCHNORM_INITS = ("uniform", "fixed", "oneone", "positivenegative")

_VARIANCE_SCALING = {
    "kaiming_normal": (2.0, "fan_in", "untruncated_normal"),
    "kaiming_uniform": (2.0, "fan_in", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "untruncated_normal"),
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
}


def layers(model) -> Iterator[keras.layers.Layer]:
    """Every layer of `model`, depth first, inside nested models and wrappers (e.g. `PruneWrapper`)."""
    seen = set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield layer
        for child in getattr(layer, "layers", None) or ():
            yield from walk(child)
        inner = getattr(layer, "layer", None)
        if isinstance(inner, keras.layers.Layer):
            yield from walk(inner)

    for layer in model.layers:
        yield from walk(layer)


def kernel_initializer(name: str, seed: int) -> keras.initializers.Initializer:
    """The Keras initializer of `model_init` name `name`."""
    if name == "orthogonal":
        return keras.initializers.Orthogonal(gain=1.0, seed=seed)
    if name not in _VARIANCE_SCALING:
        raise ValueError(
            f"Invalid value for `config.model.model_init`: expected one of {MODEL_INITS}. "
            f"Received: model_init={name!r}."
        )
    scale, mode, distribution = _VARIANCE_SCALING[name]
    return keras.initializers.VarianceScaling(scale=scale, mode=mode, distribution=distribution, seed=seed)


def batchnorm_initializers(name: str, seed: int) -> tuple:
    """`(gamma initializer, beta initializer)` of `batchnorm_init` name `name`."""
    if name == "uniform":
        return keras.initializers.RandomUniform(0.0, 1.0, seed=seed), keras.initializers.Zeros()
    if name == "fixed":
        return keras.initializers.Ones(), keras.initializers.Zeros()
    if name == "oneone":
        return keras.initializers.Ones(), keras.initializers.Ones()
    if name == "positivenegative":
        return keras.initializers.RandomUniform(-1.0, 1.0, seed=seed), keras.initializers.Zeros()
    raise ValueError(
        f"Invalid value for `config.model.batchnorm_init`: expected one of {BATCHNORM_INITS}. "
        f"Received: batchnorm_init={name!r}."
    )


def _layer_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] % (2**31 - 1))


def initialize(model: keras.Model, model_init: str = "", batchnorm_init: str = "", seed: int = 0) -> None:
    """Re-draws the kernels (`model_init`) and BatchNorm parameters (`batchnorm_init`) of a built model.

    Args:
        model: keras.Model. Built; its layers are changed in place.
        model_init: str. One of `MODEL_INITS`, or '' to keep the kernels.
            Defaults to `""`.
        batchnorm_init: str. One of `BATCHNORM_INITS`, or '' to keep gamma
            and beta. Defaults to `""`.
        seed: int. Each layer draws from a seed derived from this and its
            position. Defaults to `0`.
    """
    if model_init:
        kernel_initializer(model_init, 0)  # names the option before any layer changes
    if batchnorm_init:
        batchnorm_initializers(batchnorm_init, 0)
        if not any(isinstance(layer, keras.layers.BatchNormalization) for layer in layers(model)):
            warnings.warn(
                f"`config.model.batchnorm_init={batchnorm_init!r}` changes nothing: model '{model.name}' "
                "has no BatchNormalization layer.",
                stacklevel=2,
            )
    for index, layer in enumerate(layers(model)):
        layer_seed = _layer_seed(seed, index)
        if model_init and hasattr(layer, "kernel_initializer") and getattr(layer, "kernel", None) is not None:
            layer.kernel_initializer = kernel_initializer(model_init, layer_seed)
            kernel = layer.kernel
            kernel.assign(layer.kernel_initializer(tuple(kernel.shape), dtype=kernel.dtype))
        if batchnorm_init and isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta = batchnorm_initializers(batchnorm_init, layer_seed)
            for attribute, initializer in (("gamma", gamma), ("beta", beta)):
                variable = getattr(layer, attribute, None)
                if variable is not None:
                    setattr(layer, f"{attribute}_initializer", initializer)
                    variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
