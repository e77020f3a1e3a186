"""Masks in Keras layers: the masked variable, `PruneWrapper`, `prunable`, `strip`, reports."""

# Registers the providers of units inside attention layers (heads, keras_hub
# feed-forward units) wherever units are listed.
from tf_lottery.core import attention_units  # noqa: F401
