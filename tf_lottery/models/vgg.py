"""VGG-11/16/19 for CIFAR-10, as in open_lth and Frankle & Carbin (2019).

Every convolution is 3x3, followed by batch normalization and ReLU; the
feature map is average-pooled to 1x1 and one fully-connected layer
(`output`) gives the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

_PLANS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


def vgg(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int = 19,
    width: float = 1.0,
    kernel_initializer: str = "he_normal",
) -> keras.Model:
    """A CIFAR VGG network (`depth` 11, 16 or 19).

    Args:
        input_shape: Sequence of int. Image shape, e.g. `(32, 32, 3)`.
        num_classes: int. Number of classes.
        depth: int. 11, 16 or 19. Defaults to `19`.
        width: float. Multiplies every layer's channels. Defaults to `1.0`.
        kernel_initializer: str. Defaults to `"he_normal"` (open_lth's).

    Reference:
        Simonyan & Zisserman 2015, arXiv:1409.1556; Frankle & Carbin 2019,
        arXiv:1803.03635 (VGG-19 on CIFAR-10).
    """
    if depth not in _PLANS:
        raise ValueError(
            f"Invalid value for argument `depth`: expected one of {sorted(_PLANS)}. Received: {depth!r}."
        )
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    conv_index = 0
    for item in _PLANS[depth]:
        if item == "M":
            x = keras.layers.MaxPooling2D(2)(x)
            continue
        conv_index += 1
        x = keras.layers.Conv2D(
            max(1, int(item * width)),
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=kernel_initializer,
            name=f"conv{conv_index}",
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn{conv_index}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer, name="output")(x)
    return keras.Model(inputs, outputs, name=f"vgg{depth}")


def vgg11(input_shape, num_classes, width: float = 1.0, kernel_initializer: str = "he_normal") -> keras.Model:
    """VGG-11 for CIFAR (see `vgg`)."""
    return vgg(input_shape, num_classes, 11, width, kernel_initializer)


def vgg16(input_shape, num_classes, width: float = 1.0, kernel_initializer: str = "he_normal") -> keras.Model:
    """VGG-16 for CIFAR (see `vgg`)."""
    return vgg(input_shape, num_classes, 16, width, kernel_initializer)


def vgg19(input_shape, num_classes, width: float = 1.0, kernel_initializer: str = "he_normal") -> keras.Model:
    """VGG-19 for CIFAR (see `vgg`)."""
    return vgg(input_shape, num_classes, 19, width, kernel_initializer)
