"""Choosing which weights go: exact global / layer-wise pruning, scorers, sparsity distributions."""
