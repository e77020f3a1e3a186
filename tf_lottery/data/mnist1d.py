"""MNIST-1D (Greydanus 2020, arXiv:2011.14439), regenerated offline.

The `mnist1d` package rebuilds the canonical dataset from its generator
(4,000 train / 1,000 test sequences of length 40, seed 42) without any
download; `mnist1d.data.get_dataset()` is avoided on purpose because it
downloads by default and silently loads any `./mnist1d_data.pkl`.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def _make(seed: int, num_samples: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    data = make_dataset(args)
    return (
        np.asarray(data["x"], np.float32),
        np.asarray(data["y"], np.int64),
        np.asarray(data["x_test"], np.float32),
        np.asarray(data["y_test"], np.int64),
    )


def load_mnist1d(seed: int = 42, num_samples: int = 5000, validation: int = 0):
    """Returns `(x_train, y_train), (x_val, y_val), (x_test, y_test)`.

    Args:
        seed: int. Generator seed; 42 gives the published dataset.
            Defaults to `42`.
        num_samples: int. Total samples before the 80/20 train/test split.
            Defaults to `5000` (the canonical 4,000/1,000).
        validation: int. Number of training samples held out (from the end
            of the training set) for validation. Defaults to `0` (the
            validation arrays are then empty).
    """
    if isinstance(validation, bool) or not isinstance(validation, int) or validation < 0:
        raise ValueError(
            f"Invalid value for argument `validation`: expected an int >= 0. Received: validation={validation!r}."
        )
    x, y, x_test, y_test = _make(int(seed), int(num_samples))
    if validation >= len(x):
        raise ValueError(
            f"Invalid value for argument `validation`: {validation} must be smaller "
            f"than the training set ({len(x)} samples)."
        )
    cut = len(x) - validation
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), (x_test, y_test)
