"""A bounded, per-key sliding-window limiter (seed: join script and auth endpoints).

At most ``burst`` requests per ``window`` seconds per key; beyond that the caller is
told how long to wait. The table of tracked keys is bounded by ``max_entries``; the
least recently seen key is forgotten first. State is per process (per replica).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    def __init__(
        self,
        *,
        window: float,
        burst: int,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self.max_entries = max_entries
        self.clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def check(self, key: str) -> float | None:
        """Record a hit; None when allowed, else the seconds until one is allowed."""
        now = self.clock()
        hits = self._hits.get(key)
        if hits is None:
            hits = deque()
            self._hits[key] = hits
            while len(self._hits) > self.max_entries:
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.burst:
            return max(hits[0] + self.window - now, 0.001)
        hits.append(now)
        return None

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
