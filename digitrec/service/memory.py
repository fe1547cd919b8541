"""Give back the pages of shared libraries that were only needed while TensorFlow started.

Importing TensorFlow resolves symbols and runs registration code all over its shared libraries, so
about 380 MB of their (clean, read-only) pages end up mapped into the process; a warmed-up model then
touches a few tens of MB of them. Those pages count in the process's RSS and in a container's memory
use although nothing needs them. ``madvise(MADV_PAGEOUT)`` (Linux 5.4+) asks the kernel to reclaim them
now; a page that is needed again is simply read back in. Only read-only, file-backed mappings are
advised, so no data of the process can be lost; where the call is not supported nothing happens.

The kernel does not page out a page that another process maps too, and with gunicorn workers every
worker maps the same library pages. For those, a mapping that holds no private (copy-on-write) page is
also dropped from this process's page tables (``MADV_DONTNEED``): its pages stay in the page cache
and come back from the file on the next touch, so nothing is lost, and they no longer count in this
worker's RSS. Mappings with private pages (relocated data made read-only after loading) are left.
"""

from __future__ import annotations

import ctypes
import logging
import re
import sys
from pathlib import Path

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
MADV_PAGEOUT = 21  # linux/mman.h; Python's mmap module does not export it
_SMAPS_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")


def read_only_file_mappings(maps: str) -> list[tuple[int, int]]:
    """(start, end) of every mapping in a /proc/<pid>/maps text that is backed by a file and not writable."""
    ranges = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1] or not parts[5].startswith("/"):
            continue
        start, end = (int(value, 16) for value in parts[0].split("-"))
        ranges.append((start, end))
    return ranges


def clean_read_only_file_mappings(smaps: str) -> list[tuple[int, int]]:
    """(start, end) of the read-only, file-backed mappings in a /proc/<pid>/smaps text that hold no
    private page (``Anonymous: 0 kB``): every page they map is the file's own."""
    ranges = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        header = _SMAPS_HEADER.match(line)
        if header:
            start, end, perms, path = header.groups()
            chosen = "w" not in perms and path.startswith("/")
            current = (int(start, 16), int(end, 16)) if chosen else None
        elif current is not None and line.startswith("Anonymous:"):
            if int(line.split()[1]) == 0:
                ranges.append(current)
            current = None
    return ranges


def release_library_pages() -> int:
    """Advise the kernel to reclaim read-only file pages; returns how many mappings it accepted."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        maps = Path("/proc/self/maps").read_text()
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        log.info("not releasing library pages: %s", exc)
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    accepted = 0
    for start, end in read_only_file_mappings(maps):
        if madvise(start, end - start, MADV_PAGEOUT) == 0:
            accepted += 1
    try:
        smaps = Path("/proc/self/smaps").read_text()
    except OSError:
        return accepted
    for start, end in clean_read_only_file_mappings(smaps):  # pages other processes map as well
        madvise(start, end - start, MADV_DONTNEED)
    return accepted


def rss_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory of a process in MB: ``rss``, ``anon`` (its own) and ``file`` (mapped files)."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in fields:
                values[fields[key]] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values
