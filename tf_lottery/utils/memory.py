"""Handing memory the process freed back to the system, where the C library allows it.

NumPy and TensorFlow allocate their buffers with `malloc`. glibc keeps
freed buffers of up to 32 MB in its heap for reuse and raises its mmap
threshold each time a large mapped buffer is freed, so a loop that
allocates and frees many buffers of a few MB (one block's activations, one
layer's statistics) grows the process's resident memory step after step,
although what it holds at any time stays the same. `malloc_trim(0)`
returns the free pages of the heap to the system. It changes no setting:
later allocations behave as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        trim = None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Returns the heap's free pages to the system; `False` where the C library cannot.

    Example:

    ```python
    from tf_lottery.utils.memory import release_freed_memory

    release_freed_memory()  # after a step that freed large buffers
    ```
    """
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
