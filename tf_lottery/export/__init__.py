"""Shipping a pruned model: SavedModel for serving, sparsity-aware TFLite, `shrink`."""

# Registers how `shrink` rebuilds attention layers and keras_hub transformer
# blocks, and the shrunk blocks' classes for `keras.saving.load_model`.
from tf_lottery.export import shrink_attention  # noqa: F401
