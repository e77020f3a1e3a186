"""MNIST-1D (Greydanus 2020, arXiv:2011.14439), regenerated offline.

The `mnist1d` package rebuilds the canonical dataset from its generator
(4,000 train / 1,000 test sequences of length 40, seed 42) without any
download; `mnist1d.data.get_dataset()` is avoided on purpose because it
downloads by default and silently loads any `./mnist1d_data.pkl`.

Generating takes seconds (importing the generator and its plotting
dependencies included), so the arrays are kept in a cache folder and read
back by the next process: `$TF_LOTTERY_CACHE_DIR` if set (empty switches
the cache off), else `$XDG_CACHE_HOME/tf_lottery` or
`~/.cache/tf_lottery`. A file is named by the seed, the sample count and
the generator's version; one that does not read back whole, or holds
other arrays than its name promises, is generated again and replaced (with
a warning naming it). A folder that cannot be written is named in a
warning; the data is still returned, generated.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import warnings

import numpy as np

from tf_lottery.utils import atomic_io

# The layout of a cached file; a change of it (or of the arrays' meaning) bumps it.
_CACHE_FORMAT = 1
_LENGTH = 40  # the generator's default sequence length
_ARRAYS = ("x", "y", "x_test", "y_test")
_KEYS = (*_ARRAYS, "info")


def cache_dir() -> str | None:
    """The folder generated datasets are kept in, or `None` when `$TF_LOTTERY_CACHE_DIR` is empty."""
    chosen = os.environ.get("TF_LOTTERY_CACHE_DIR")
    if chosen is not None:
        return chosen or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tf_lottery")


def _cache_file(seed: int, num_samples: int) -> tuple[str | None, dict]:
    try:
        version = importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        version = None
    info = {"format": _CACHE_FORMAT, "generator": version, "seed": seed, "num_samples": num_samples}
    folder = cache_dir()
    if folder is None or version is None:
        return None, info
    return os.path.join(folder, f"mnist1d-{version}-seed{seed}-n{num_samples}.npz"), info


def _cached(path: str, info: dict):
    """The four arrays kept in `path`; `DamagedFileError` if they are not what `info` describes."""
    arrays = atomic_io.load_npz(path)
    if sorted(arrays) != sorted(_KEYS):
        raise atomic_io.DamagedFileError(
            path, f"it holds the arrays {sorted(arrays)}, expected {sorted(_KEYS)}"
        )
    stored = atomic_io.json_entry(arrays, "info", path)
    if stored != info:
        raise atomic_io.DamagedFileError(path, f"it describes {stored}, expected {info}")
    x, y, x_test, y_test = (arrays[key] for key in _ARRAYS)
    shapes_ok = (
        x.dtype == x_test.dtype == np.float32
        and y.dtype == y_test.dtype == np.int64
        and x.ndim == x_test.ndim == 2
        and x.shape[1] == x_test.shape[1] == _LENGTH
        and y.shape == x.shape[:1]
        and y_test.shape == x_test.shape[:1]
        and len(x) + len(x_test) == info["num_samples"]
    )
    if not shapes_ok:
        shapes = {key: (str(arrays[key].dtype), arrays[key].shape) for key in _ARRAYS}
        raise atomic_io.DamagedFileError(path, f"its arrays do not form the dataset: {shapes}")
    return x, y, x_test, y_test


def _generate(seed: int, num_samples: int):
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


@functools.lru_cache(maxsize=4)
def _make(seed: int, num_samples: int):
    path, info = _cache_file(seed, num_samples)
    if path is not None and atomic_io.isfile(path):
        try:
            return _cached(path, info)
        except (atomic_io.DamagedFileError, OSError) as error:
            warnings.warn(
                f"MNIST-1D: the cached copy is not used and is generated again: {error}", stacklevel=3
            )
    arrays = _generate(seed, num_samples)
    if path is not None:
        try:
            atomic_io.makedirs(os.path.dirname(path))
            atomic_io.write_npz(path, {**dict(zip(_ARRAYS, arrays)), "info": atomic_io.json_array(info)})
        except OSError as error:
            warnings.warn(
                f"MNIST-1D: the cache folder '{os.path.dirname(path)}' cannot be written ({error}), so "
                "every process generates the data again. Set TF_LOTTERY_CACHE_DIR to a writable "
                "folder, or to an empty value to switch the cache off.",
                stacklevel=3,
            )
    return arrays


def load_mnist1d(seed: int = 42, num_samples: int = 5000, validation: int = 0):
    """Returns `(x_train, y_train), (x_val, y_val), (x_test, y_test)`.

    The arrays are generated once and then read from the cache folder
    (see the module's docstring); a cached copy is the generated one bit
    for bit.

    Args:
        seed: int. Generator seed; 42 gives the published dataset.
            Defaults to `42`.
        num_samples: int. Total samples before the 80/20 train/test split.
            Defaults to `5000` (the canonical 4,000/1,000).
        validation: int. Number of training samples held out (from the end
            of the training set) for validation. Defaults to `0` (the
            validation arrays are then empty).

    Example:

    ```python
    (x, y), (x_val, y_val), (x_test, y_test) = load_mnist1d(validation=500)
    x.shape, x_val.shape, x_test.shape  # (3500, 40), (500, 40), (1000, 40)
    ```
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
