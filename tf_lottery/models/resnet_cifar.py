"""ResNet-20/32/56/110 for CIFAR (He et al. 2016), as in open_lth.

Depth 6N+2: a 3x3 stem, three stages of N basic blocks with 16, 32 and 64
channels (times `width`), global average pooling and one fully-connected
layer (`output`). Downsampling blocks use a 1x1 convolution shortcut with
batch normalization (open_lth's choice). Frankle & Carbin (2019) call the
ResNet-20 shape "Resnet-18".
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _conv_bn(x, filters, kernel, strides, name, initializer, relu=True):
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=initializer,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, filters, strides, name, initializer):
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, f"{name}_a", initializer)
    y = _conv_bn(y, filters, 3, 1, f"{name}_b", initializer, relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_shortcut", initializer, relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet_cifar(
    input_shape: Sequence[int],
    num_classes: int,
    depth: int = 20,
    width: int = 16,
    kernel_initializer: str = "he_normal",
) -> keras.Model:
    """A CIFAR ResNet of depth 6N+2 (20, 32, 44, 56, 110, ...).

    Args:
        input_shape: Sequence of int. Image shape, e.g. `(32, 32, 3)`.
        num_classes: int. Number of classes.
        depth: int. 6N+2. Defaults to `20`.
        width: int. Channels of the first stage (then x2, x4). Defaults to `16`.
        kernel_initializer: str. Defaults to `"he_normal"`.

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
        arXiv:1512.03385, Section 4.2.
    """
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(
            f"Invalid value for argument `depth`: expected 6N+2 (20, 32, 56, 110). Received: {depth!r}."
        )
    blocks = (depth - 2) // 6
    inputs = keras.Input(tuple(input_shape))
    x = _conv_bn(inputs, width, 3, 1, "stem", kernel_initializer)
    for stage in range(3):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _block(x, width * 2**stage, strides, f"stage{stage + 1}_block{block + 1}", kernel_initializer)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer, name="output")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


def resnet20(input_shape, num_classes, width: int = 16, kernel_initializer: str = "he_normal") -> keras.Model:
    """ResNet-20 (see `resnet_cifar`)."""
    return resnet_cifar(input_shape, num_classes, 20, width, kernel_initializer)


def resnet32(input_shape, num_classes, width: int = 16, kernel_initializer: str = "he_normal") -> keras.Model:
    """ResNet-32 (see `resnet_cifar`)."""
    return resnet_cifar(input_shape, num_classes, 32, width, kernel_initializer)


def resnet56(input_shape, num_classes, width: int = 16, kernel_initializer: str = "he_normal") -> keras.Model:
    """ResNet-56 (see `resnet_cifar`)."""
    return resnet_cifar(input_shape, num_classes, 56, width, kernel_initializer)


def resnet110(
    input_shape, num_classes, width: int = 16, kernel_initializer: str = "he_normal"
) -> keras.Model:
    """ResNet-110 (see `resnet_cifar`)."""
    return resnet_cifar(input_shape, num_classes, 110, width, kernel_initializer)
