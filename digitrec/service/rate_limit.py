"""A per-client limit on how often something may happen (corrections per minute), kept in memory.

Fixed one-minute windows with the previous window's count weighed in by how much of it still overlaps
(the "sliding window counter"): exact enough to stop a flood, one dict entry per active client. Each
serving process keeps its own counts, so with N worker processes a client gets up to N times the limit
in the worst case; the HAProxy stick table in front of a cluster limits all requests across replicas.
"""

from __future__ import annotations

import math
import threading
import time

WINDOW_SECONDS = 60.0
MAX_CLIENTS = 100_000  # beyond this, windows older than the current one are dropped first


class RateLimiter:
    """``allow(key)``: True and counted, or False when ``key`` reached ``per_minute`` in the last minute."""

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int, int]] = {}  # key -> (window number, count, previous count)

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        into = (now % WINDOW_SECONDS) / WINDOW_SECONDS
        with self._lock:
            number, count, previous = self._counts.get(key, (window, 0, 0))
            if number != window:
                previous = count if number == window - 1 else 0
                count = 0
            estimate = count + previous * (1.0 - into)
            if estimate >= self.per_minute:
                self._counts[key] = (window, count, previous)
                return False
            self._counts[key] = (window, count + 1, previous)
            if len(self._counts) > MAX_CLIENTS:
                self._forget(window)
            return True

    def retry_after(self) -> int:
        """Seconds until the current window ends (a client retrying then is mostly let through)."""
        return max(1, math.ceil(WINDOW_SECONDS - self._clock() % WINDOW_SECONDS))

    def _forget(self, window: int) -> None:
        for key in [k for k, (n, _, _) in self._counts.items() if n < window]:
            del self._counts[key]
