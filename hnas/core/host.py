"""This machine's memory: what is available to a process, and how much of it hnas lets itself use."""

from __future__ import annotations

import os
from pathlib import Path

HEADROOM = 0.9  # use at most this share of what is available
GB = 2**30


def host_available() -> int:
    """MemAvailable of /proc/meminfo, capped by a cgroup memory limit; the physical memory elsewhere."""
    avail = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        p = Path(limit_file)
        if p.is_file():
            text = p.read_text().strip()
            if text.isdigit():
                used_file = p.with_name("memory.current" if p.name == "memory.max" else "memory.usage_in_bytes")
                used = int(used_file.read_text()) if used_file.is_file() else 0
                avail = min(avail, int(text) - used)
    return max(0, avail)
