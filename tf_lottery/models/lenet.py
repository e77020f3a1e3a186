"""LeNet-300-100, the fully-connected MNIST network of Frankle & Carbin (2019)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tf_lottery.models.mlp import mlp


def lenet_300_100(
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (300, 100),
    kernel_initializer: str = "glorot_normal",
) -> keras.Model:
    """784 -> 300 -> 100 -> 10 with ReLU and Gaussian Glorot initialisation.

    Args:
        input_shape: Sequence of int. Shape of one image, e.g. `(28, 28, 1)`.
        num_classes: int. Number of classes.
        hidden: Sequence of int. Hidden widths. Defaults to `(300, 100)`.
        kernel_initializer: str. Defaults to `"glorot_normal"` (the paper's).

    Reference:
        Frankle & Carbin, ICLR 2019, arXiv:1803.03635, Table 1 / Figure 2.
    """
    return mlp(input_shape, num_classes, hidden, kernel_initializer, name="lenet_300_100")
