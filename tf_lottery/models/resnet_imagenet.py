"""ResNet-18 and ResNet-50 for ImageNet (He et al. 2016), torchvision layout.

A 7x7 stride-2 stem with 3x3 max-pooling, four stages (64, 128, 256, 512
channels; x4 at the output of bottleneck blocks), stride 2 on the 3x3
convolution of each stage's first block ("v1.5"), 1x1 projection shortcuts,
global average pooling and a fully-connected `output` layer. This is the
network open_lth and the linear-mode-connectivity paper prune.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _bn(x, name, zero=False):
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, gamma_initializer="zeros" if zero else "ones", name=name
    )(x)


def _conv(x, filters, kernel, strides, name, initializer):
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=initializer,
        name=name,
    )(x)


def _basic(x, filters, strides, name, initializer, zero_init_residual):
    y = keras.layers.ReLU()(_bn(_conv(x, filters, 3, strides, f"{name}_conv1", initializer), f"{name}_bn1"))
    y = _bn(_conv(y, filters, 3, 1, f"{name}_conv2", initializer), f"{name}_bn2", zero_init_residual)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _bn(
            _conv(x, filters, 1, strides, f"{name}_downsample", initializer), f"{name}_downsample_bn"
        )
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def _bottleneck(x, filters, strides, name, initializer, zero_init_residual):
    out = filters * 4
    y = keras.layers.ReLU()(_bn(_conv(x, filters, 1, 1, f"{name}_conv1", initializer), f"{name}_bn1"))
    y = keras.layers.ReLU()(_bn(_conv(y, filters, 3, strides, f"{name}_conv2", initializer), f"{name}_bn2"))
    y = _bn(_conv(y, out, 1, 1, f"{name}_conv3", initializer), f"{name}_bn3", zero_init_residual)
    shortcut = x
    if strides != 1 or x.shape[-1] != out:
        shortcut = _bn(_conv(x, out, 1, strides, f"{name}_downsample", initializer), f"{name}_downsample_bn")
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def resnet_imagenet(
    input_shape: Sequence[int],
    num_classes: int,
    blocks: Sequence[int] = (2, 2, 2, 2),
    bottleneck: bool = False,
    zero_init_residual: bool = False,
    kernel_initializer: str = "he_normal",
    name: str = "resnet",
) -> keras.Model:
    """An ImageNet ResNet.

    Args:
        input_shape: Sequence of int. Image shape, e.g. `(224, 224, 3)`.
        num_classes: int. Number of classes.
        blocks: Sequence of 4 ints. Blocks per stage.
        bottleneck: bool. Bottleneck (1x1-3x3-1x1) instead of basic blocks.
        zero_init_residual: bool. Start each block's last BN scale at 0
            (Goyal et al. 2017). Defaults to `False`.
        kernel_initializer: str. Defaults to `"he_normal"`.
        name: str. Model name.

    Reference:
        He et al., CVPR 2016, arXiv:1512.03385.
    """
    block_fn = _bottleneck if bottleneck else _basic
    inputs = keras.Input(tuple(input_shape))
    x = _conv(inputs, 64, 7, 2, "stem_conv", kernel_initializer)
    x = keras.layers.ReLU()(_bn(x, "stem_bn"))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, count in enumerate(blocks):
        for block in range(int(count)):
            strides = 2 if stage > 0 and block == 0 else 1
            x = block_fn(
                x,
                64 * 2**stage,
                strides,
                f"stage{stage + 1}_block{block + 1}",
                kernel_initializer,
                zero_init_residual,
            )
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer="glorot_uniform", name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet18(
    input_shape, num_classes, zero_init_residual: bool = False, kernel_initializer: str = "he_normal"
) -> keras.Model:
    """ResNet-18 (basic blocks 2-2-2-2, 11.7M parameters at 1000 classes)."""
    return resnet_imagenet(
        input_shape, num_classes, (2, 2, 2, 2), False, zero_init_residual, kernel_initializer, "resnet18"
    )


def resnet50(
    input_shape, num_classes, zero_init_residual: bool = False, kernel_initializer: str = "he_normal"
) -> keras.Model:
    """ResNet-50 (bottleneck blocks 3-4-6-3, 25.6M parameters at 1000 classes)."""
    return resnet_imagenet(
        input_shape, num_classes, (3, 4, 6, 3), True, zero_init_residual, kernel_initializer, "resnet50"
    )
