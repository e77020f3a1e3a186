"""Conv-2, Conv-4 and Conv-6: the VGG-like CIFAR-10 networks of Frankle & Carbin (2019)."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def conv_net(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (64, 64),
    fc: Sequence[int] = (256, 256),
    dropout: float = 0.0,
    kernel_initializer: str = "glorot_normal",
    name: str = "conv",
) -> keras.Model:
    """3x3 ReLU convolutions, 2x2 max-pooling after every pair, then ReLU fc layers.

    Layers are named `conv1..`, `fc1..` and `output`, so per-layer rates read
    `"conv*=0.1,fc*=0.2,output=0.1"`.

    Args:
        input_shape: Sequence of int. Image shape, e.g. `(32, 32, 3)`.
        num_classes: int. Number of classes.
        filters: Sequence of int. Channels of each convolution; a max-pool
            follows every second one. Defaults to `(64, 64)` (Conv-2).
        fc: Sequence of int. Hidden fully-connected widths. Defaults to
            `(256, 256)`.
        dropout: float. Dropout rate before each fc layer (the paper's
            dropout experiments use 0.5). Defaults to `0.0`.
        kernel_initializer: str. Defaults to `"glorot_normal"`.
        name: str. Model name.
    """
    inputs = keras.Input(tuple(input_shape))
    x = inputs
    for index, channels in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            int(channels),
            3,
            padding="same",
            activation="relu",
            kernel_initializer=kernel_initializer,
            name=f"conv{index}",
        )(x)
        if index % 2 == 0:
            x = keras.layers.MaxPooling2D(2, name=f"pool{index // 2}")(x)
    x = keras.layers.Flatten()(x)
    for index, units in enumerate(fc, start=1):
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.Dense(
            int(units), activation="relu", kernel_initializer=kernel_initializer, name=f"fc{index}"
        )(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def conv2(
    input_shape, num_classes, dropout: float = 0.0, kernel_initializer: str = "glorot_normal"
) -> keras.Model:
    """Conv-2: 64, 64, pool; fc 256, 256, 10 (Frankle & Carbin 2019, Table 1)."""
    return conv_net(input_shape, num_classes, (64, 64), (256, 256), dropout, kernel_initializer, "conv2")


def conv4(
    input_shape, num_classes, dropout: float = 0.0, kernel_initializer: str = "glorot_normal"
) -> keras.Model:
    """Conv-4: 64, 64, pool, 128, 128, pool; fc 256, 256, 10."""
    return conv_net(
        input_shape, num_classes, (64, 64, 128, 128), (256, 256), dropout, kernel_initializer, "conv4"
    )


def conv6(
    input_shape, num_classes, dropout: float = 0.0, kernel_initializer: str = "glorot_normal"
) -> keras.Model:
    """Conv-6: 64, 64, pool, 128, 128, pool, 256, 256, pool; fc 256, 256, 10."""
    return conv_net(
        input_shape,
        num_classes,
        (64, 64, 128, 128, 256, 256),
        (256, 256),
        dropout,
        kernel_initializer,
        "conv6",
    )
