"""Shipping a pruned model: SavedModel for serving, sparsity-aware TFLite."""
