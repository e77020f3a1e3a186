"""Peak resident memory of the current process (Linux `/proc`), for the scale benchmarks."""

from __future__ import annotations

import re


def status_kib(field: str) -> int:
    """A `/proc/self/status` field in KiB (`VmRSS`: now; `VmHWM`: the high-water mark)."""
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


def reset_peak_rss() -> bool:
    """Resets the process's RSS high-water mark; False where Linux's /proc is missing."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True
