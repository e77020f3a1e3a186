"""Low-level helpers with no Keras model logic: atomic file writes, failpoints, argument checks."""
