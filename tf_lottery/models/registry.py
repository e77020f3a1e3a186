"""Models by name: `build_model("lenet_300_100", (28, 28, 1), 10)`.

Names are matched without case, '-' or '_' ("LeNet-300-100", "ResNet-20",
"VGG_19" all work). Extra keyword arguments go to the builder; its signature
defaults are what the run hash compares against (see
`tf_lottery.experiments.config_hash`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import keras

from tf_lottery.models import conv, lenet, mlp, resnet_cifar, resnet_imagenet, vgg

_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "mnist1d_mlp": mlp.mnist1d_mlp,
    "mlp": mlp.mlp,
    "lenet_300_100": lenet.lenet_300_100,
    "conv2": conv.conv2,
    "conv4": conv.conv4,
    "conv6": conv.conv6,
    "vgg11": vgg.vgg11,
    "vgg16": vgg.vgg16,
    "vgg19": vgg.vgg19,
    "resnet20": resnet_cifar.resnet20,
    "resnet32": resnet_cifar.resnet32,
    "resnet56": resnet_cifar.resnet56,
    "resnet110": resnet_cifar.resnet110,
    "resnet18": resnet_imagenet.resnet18,
    "resnet50": resnet_imagenet.resnet50,
}
# `name` is the model's Keras name, set by the builder, not an option.
_POSITIONAL = ("input_shape", "num_classes", "name")


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(name): name for name in _BUILDERS}


def names() -> list[str]:
    """The registered model names."""
    return list(_BUILDERS)


def canonical_name(name: str) -> str:
    """The registered spelling of `name` (e.g. "LeNet-300-100" -> "lenet_300_100")."""
    if isinstance(name, str) and _key(name) in _BY_KEY:
        return _BY_KEY[_key(name)]
    raise ValueError(
        f"Invalid value for `config.model.name`: expected one of {names()}. Received: name={name!r}."
    )


def builder_defaults(name: str) -> dict:
    """The builder's keyword arguments and their default values."""
    signature = inspect.signature(_BUILDERS[canonical_name(name)])
    return {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if key not in _POSITIONAL and parameter.default is not inspect.Parameter.empty
    }


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> keras.Model:
    """Builds the named model (functional, final layer `output`, logits out).

    Args:
        name: str. A name from `names()`.
        input_shape: Sequence of int. Shape of one example.
        num_classes: int. Number of classes.
        **kwargs: The builder's options (see its docstring), e.g.
            `hidden=(300, 100)`.

    Example:

    ```python
    model = build_model("ResNet-20", (32, 32, 3), 10)
    ```
    """
    canonical = canonical_name(name)
    accepted = builder_defaults(canonical)
    for key in kwargs:
        if key not in accepted:
            raise ValueError(
                f"Unknown config key `config.model.{key}` for model '{canonical}': "
                f"expected one of {sorted(accepted)}. Received: {key}={kwargs[key]!r}."
            )
    return _BUILDERS[canonical](tuple(input_shape), int(num_classes), **kwargs)
