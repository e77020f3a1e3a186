"""Dynamic sparse training (RigL / SET) as a Keras callback."""
