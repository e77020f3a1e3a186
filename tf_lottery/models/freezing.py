"""open_lth's `output_frozen` and `batchnorm_frozen`: parameters kept at their initial values.

Freezing marks variables non-trainable (`variable.trainable = False`), so
the optimizer, built afterwards, never updates them: the output layer's
kernel and bias (the layer named `output`, as every registered model names
its classifier), or every BatchNormalization layer's gamma and beta. The
BatchNormalization layers themselves stay trainable, so they still
normalise with the batch statistics in training and update their moving
averages, as open_lth's frozen `BatchNorm2d` does (Keras' `layer.trainable =
False` would switch them to inference mode instead). A pruned frozen
kernel keeps its pruned entries at zero: pruning sets them, and nothing
trains them.

Example:

```python
model = build_model("resnet20", (32, 32, 3), 10)
freeze(model, output=True, batchnorm=True)  # then compile
```

Reference:
    Frankle, Schwab & Morcos, "Training BatchNorm and Only BatchNorm",
    ICLR 2021, arXiv:2003.00152.
"""

from __future__ import annotations

import warnings

import keras

from tf_lottery.models.initializers import layers

OUTPUT_LAYER = "output"


def freeze(model: keras.Model, output: bool = False, batchnorm: bool = False) -> None:
    """Marks the output layer's and/or the BatchNorm layers' parameters non-trainable.

    Call it before the model is compiled (the optimizer takes the trainable
    variables it finds then).

    Args:
        model: keras.Model. Built.
        output: bool. Freeze the kernel and bias of the layer named
            `output`. Defaults to `False`.
        batchnorm: bool. Freeze gamma and beta of every BatchNormalization
            layer. Defaults to `False`.
    """
    found = list(layers(model))
    if output:
        heads = [layer for layer in found if layer.name == OUTPUT_LAYER and layer.weights]
        if not heads:
            raise ValueError(
                f"Invalid value for `config.model.output_frozen`: model '{model.name}' has no layer named "
                f"'{OUTPUT_LAYER}' with weights to freeze. Received: output_frozen=True."
            )
        for variable in heads[0].weights:
            variable.trainable = False
    if batchnorm:
        norms = [layer for layer in found if isinstance(layer, keras.layers.BatchNormalization)]
        if not norms:
            warnings.warn(
                f"`config.model.batchnorm_frozen=True` freezes nothing: model '{model.name}' has no "
                "BatchNormalization layer.",
                stacklevel=2,
            )
        for layer in norms:
            for variable in (layer.gamma, layer.beta):
                if variable is not None:
                    variable.trainable = False
