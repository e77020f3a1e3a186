"""`release_freed_memory`: freed heap pages go back to the system (glibc)."""

import ctypes
import ctypes.util
import platform
import threading

import pytest

from tf_lottery.utils.memory import release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_heap_buffers_return_to_the_system():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 100 << 10  # 100 KB: below glibc's mmap threshold, so from the heap
    buffers, pins = [], []

    def allocate():  # in another thread, from another of glibc's arenas (as TensorFlow's threads do)
        for _ in range(2000):  # 200 MB, each buffer followed by a small one kept alive
            buffers.append(libc.malloc(size))
            ctypes.memset(buffers[-1], 1, size)  # touched: resident
            pins.append(libc.malloc(64))

    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
    held = _rss_mb()
    for pointer in buffers:
        libc.free(pointer)
    kept = _rss_mb()  # the pins keep the heap from shrinking from its top
    assert release_freed_memory() is True
    released = _rss_mb()
    for pointer in pins:
        libc.free(pointer)
    assert held - kept < 50, (held, kept)
    assert kept - released > 150, (kept, released)
