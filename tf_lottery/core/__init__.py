"""Masks in Keras layers: the masked variable, `PruneWrapper`, `prunable`, `strip`, reports."""
