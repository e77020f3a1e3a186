"""Datasets: MNIST-1D generated offline, and tfds pipelines."""
