"""`PruneWrapper`: a Keras wrapper layer that holds the pruning masks."""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core import masked_variable
from tf_lottery.core.prunable_layers import is_prunable_layer, prunable_weights


@keras.saving.register_keras_serializable(package="tf_lottery")
class PruneWrapper(keras.layers.Wrapper):
    """Holds one boolean mask per prunable weight of the wrapped layer.

    The masks are non-trainable variables of the wrapper, so they are saved
    with the model (`.keras`, `.weights.h5`, `tf.train.Checkpoint`) and
    mirrored under `tf.distribute`. Each mask is bound to its weight (see
    `tf_lottery.core.masked_variable`): pruned positions stay exactly `0.0` after
    every optimizer step inside the compiled train step, and after
    `set_weights`, `load_weights` or a rewind. The forward pass is the wrapped
    layer's own `call`, with no masking work at inference.

    Masks start all-ones (dense). Change them with `set_masks`, or let
    `tf_lottery.prune` / `tf_lottery.LotteryCallback` do it.

    Args:
        layer: A prunable `keras.layers.Layer` (see
            `tf_lottery.core.prunable_layers`).
        mask_gradients: If True (default), the gradient of every pruned
            position is zero before the optimizer sees it, so gradient
            clipping, layer-wise optimizers (Lamb, Adafactor, Muon) and the
            optimizer's slots see the network without the pruned weights
            ("sparse-equivalent" updates). If False, the optimizer sees the
            dense gradient and the pruned weights are only re-zeroed after
            its update (tensorflow-model-optimization's and open_lth's
            semantics).
        **kwargs: Base `keras.layers.Layer` arguments (`name`, ...).

    Example:

    ```python
    inputs = keras.Input((784,))
    hidden = tfl.PruneWrapper(keras.layers.Dense(300, activation="relu"))
    outputs = tfl.PruneWrapper(keras.layers.Dense(10))(hidden(inputs))
    model = keras.Model(inputs, outputs)
    ```

    Reference:
        Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse,
        Trainable Neural Networks", ICLR 2019, arXiv:1803.03635.
    """

    def __init__(self, layer, mask_gradients=True, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Invalid value for argument `layer`: expected a Keras layer. "
                f"Received: layer={layer!r} of type {type(layer).__name__}."
            )
        if isinstance(layer, PruneWrapper):
            raise ValueError(
                f"Invalid value for argument `layer`: '{layer.name}' is already a "
                "PruneWrapper. Wrap the inner layer once."
            )
        if not is_prunable_layer(layer):
            raise ValueError(
                f"Invalid value for argument `layer`: {type(layer).__name__} "
                f"'{layer.name}' has no prunable weights. Prunable types are Dense, "
                "EinsumDense, Conv*, Conv*Transpose, DepthwiseConv*, "
                "SeparableConv*, Embedding, MultiHeadAttention, LSTM, GRU, SimpleRNN, "
                "ConvLSTM* (also inside TimeDistributed or Bidirectional); custom layers "
                "opt in by defining `get_prunable_weights()`."
            )
        if not isinstance(mask_gradients, bool):
            raise ValueError(
                "Invalid value for argument `mask_gradients`: expected True or False. "
                f"Received: mask_gradients={mask_gradients!r}."
            )
        kwargs.setdefault("name", f"prune_{layer.name}")
        super().__init__(layer, **kwargs)
        # Arguments bound as the inner layer's (keras_hub's `generate()` passes
        # `cache_update_index=0` beside tensors).
        _keras_compat.adopt_call_signature(self, layer)
        self.mask_gradients = mask_gradients
        self.supports_masking = layer.supports_masking
        self._masks = ()
        if layer.built:
            self._create_masks()
            self.built = True

    # -- building -----------------------------------------------------------

    def _create_masks(self):
        if self._masks:
            return
        masks = []
        for weight in prunable_weights(self.layer):
            mask = self.add_weight(
                name=f"{weight.name}_mask",
                shape=tuple(weight.shape),
                dtype="bool",
                initializer="ones",
                trainable=False,
                aggregation="only_first_replica",
            )
            masked_variable.bind_mask(weight, mask, mask_gradients=self.mask_gradients)
            masks.append(mask)
        # A tuple (not a list) so that TensorFlow checkpoints track the masks.
        self._masks = tuple(masks)

    def build(self, input_shape=None):
        # Left to the first call: the inner layer then builds from all of its
        # arguments (MultiHeadAttention needs query and value shapes).
        del input_shape

    def call(self, *args, **kwargs):
        # Any signature: keras_hub calls attention as `layer(query=..., value=...)`.
        outputs = self.layer(*args, **kwargs)
        if not self._masks:
            # A layer wrapped before it was built gets its masks here, right
            # after its first call built it.
            with _keras_compat.unlocked_tracker(self):
                self._create_masks()
        return outputs

    @_keras_compat.keeps_default_output_spec
    def compute_output_shape(self, *args, **kwargs):
        # Asked for directly by Keras' own wrappers (`TimeDistributed` around
        # a `PruneWrapper`). Symbolic calls still run `call` (which creates the
        # masks of a layer wrapped unbuilt), see `keeps_default_output_spec`.
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: public attributes of the
        # wrapped layer read through the wrapper (`wrapper.embeddings`,
        # `wrapper.units`, an RNN's `cell`), so code that holds the wrapper
        # where it held the layer (weight tying, `Bidirectional`) keeps
        # working. Private names are not forwarded, so Keras' own bookkeeping
        # never reads the inner layer's by mistake.
        if name.startswith("_") or name == "layer":
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        layer = self.__dict__.get("layer")
        if layer is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(layer, name)

    def get_config(self):
        return {**super().get_config(), "mask_gradients": self.mask_gradients}

    def get_build_config(self):
        return self.layer.get_build_config()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        self._create_masks()
        self.built = True

    # -- masks --------------------------------------------------------------

    @property
    def pruned_weights(self) -> list:
        """The wrapped layer's variables that the masks apply to."""
        return prunable_weights(self.layer) if self._masks else []

    @property
    def masks(self) -> list:
        """The boolean mask variables, aligned with `pruned_weights`."""
        return list(self._masks)

    def get_masks(self) -> list[np.ndarray]:
        """The masks as boolean NumPy arrays."""
        return [np.asarray(keras.ops.convert_to_numpy(m)) for m in self._masks]

    def set_masks(self, masks) -> None:
        """Sets the masks and zeroes the newly pruned weights.

        The optimizer slots of the weights (momentum, Adam's moments, ...) of
        every optimizer that has trained them are zeroed where a mask changed.

        Args:
            masks: Sequence of boolean arrays, one per entry of
                `pruned_weights`, each of the same shape.
        """
        masks = list(masks)
        if len(masks) != len(self._masks):
            raise ValueError(
                f"Invalid value for argument `masks` of '{self.name}': expected "
                f"{len(self._masks)} arrays (one per pruned weight). "
                f"Received {len(masks)}."
            )
        arrays = []
        for index, (mask_var, mask, weight) in enumerate(zip(self._masks, masks, self.pruned_weights)):
            mask = np.asarray(mask)
            if mask.shape != tuple(mask_var.shape):
                # The weight's path, not the short mask name (`kernel_mask`
                # repeats across a transformer's blocks and projections).
                raise ValueError(
                    f"Invalid value for argument `masks` of '{self.name}': mask #{index} "
                    f"(of '{weight.path}') needs shape {tuple(mask_var.shape)}. "
                    f"Received shape {mask.shape}."
                )
            arrays.append(mask.astype(bool))
        for mask_var, mask, weight in zip(self._masks, arrays, self.pruned_weights):
            before = np.asarray(keras.ops.convert_to_numpy(mask_var))
            mask_var.assign(mask)
            # Slots of the optimizers that trained `weight` restart at zero
            # wherever the mask changed: a pruned weight's momentum must not
            # carry its history, nor a regrown weight start with stale state.
            masked_variable.rezero(weight, changed=before != mask)

    def apply_masks(self) -> None:
        """Re-zeroes pruned positions (useful after writing a variable's
        underlying `tf.Variable` directly)."""
        for weight in self.pruned_weights:
            masked_variable.rezero(weight)
