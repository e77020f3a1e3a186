"""`release_freed_memory`: freed heap pages go back to the system (glibc)."""

import platform
import subprocess
import sys

import pytest

from tf_lottery.utils import memory

# Run in a fresh interpreter: in a long test process (xdist worker, TensorFlow's threads) the
# new thread may share an arena whose other chunks let glibc trim on `free` already, which
# says nothing about `release_freed_memory`. The module is loaded by path, without the
# package (no TensorFlow), so the process holds little besides the buffers.
_SCRIPT = r"""
import ctypes, ctypes.util, importlib.util, sys, threading

spec = importlib.util.spec_from_file_location("memory", sys.argv[1])
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)


def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


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
held = rss_mb()
for pointer in buffers:
    libc.free(pointer)
kept = rss_mb()  # the pins keep the heap from shrinking from its top
released_ok = memory.release_freed_memory()
released = rss_mb()
print(held, kept, released, released_ok)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_heap_buffers_return_to_the_system():
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, memory.__file__],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    held, kept, released, ok = result.stdout.split()
    held, kept, released = float(held), float(kept), float(released)
    assert ok == "True"
    assert held - kept < 50, (held, kept)  # `free` alone keeps the pages
    assert kept - released > 150, (kept, released)  # `release_freed_memory` hands them back
