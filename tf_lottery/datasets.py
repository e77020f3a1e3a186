"""Small datasets for examples and notebooks, as NumPy arrays: `from tf_lottery.datasets import mnist1d`.

Not part of `import tf_lottery` (the Keras library needs none of them): each
helper looks for its generator when called (and imports it only to generate),
so this module imports without the `experiments` extra, and a call without it
says what to install.
"""

from __future__ import annotations

import importlib.util

__all__ = ["mnist1d"]


def mnist1d(validation: int = 500, seed: int = 42, num_samples: int = 5000):
    """MNIST-1D (Greydanus 2020), generated offline: `(x, y), (x_val, y_val), (x_test, y_test)`.

    Sequences of length 40 (`float32`, shape `(n, 40)`) with labels 0-9
    (`int64`); the canonical dataset is 4,000 training and 1,000 test
    sequences, of which the last `validation` training ones are held out.
    Needs the `mnist1d` package (`pip install 'tf_lottery[experiments]'`).

    Args:
        validation: int. Training sequences held out for validation.
            Defaults to `500` (3,500 / 500 / 1,000, as the command line's
            default experiment).
        seed: int. Generator seed; 42 gives the published dataset.
            Defaults to `42`.
        num_samples: int. Sequences before the 80/20 train/test split.
            Defaults to `5000`.

    Example:

    ```python
    from tf_lottery.datasets import mnist1d

    (x, y), (x_val, y_val), (x_test, y_test) = mnist1d()
    x.shape, x_val.shape, x_test.shape  # (3500, 40), (500, 40), (1000, 40)
    ```

    Reference: Greydanus, "Scaling down Deep Learning", 2020 (arXiv:2011.14439).
    """
    try:
        # Present or not, before any work; not imported (a cached copy needs no generator).
        present = importlib.util.find_spec("mnist1d") is not None
    except (ModuleNotFoundError, ValueError):
        present = False
    if not present:
        raise ModuleNotFoundError(
            "tf_lottery.datasets.mnist1d() needs the `mnist1d` package. Install it with: "
            "pip install 'tf_lottery[experiments]' (or pip install mnist1d).",
            name="mnist1d",
        ) from None
    from tf_lottery.data.mnist1d import load_mnist1d

    return load_mnist1d(seed=seed, num_samples=num_samples, validation=validation)
