"""Per-key exponential backoff with jitter (the state — attempts — lives in the database)."""

from __future__ import annotations

import random


def backoff_seconds(
    attempts: int, *, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempts`` (1 = first retry).

    Exponential growth capped at ``cap``; the delay is drawn from [d/2, d] so that keys
    failing together (a host outage) do not retry in lockstep.
    """
    if attempts < 1:
        return 0.0
    ceiling = min(cap, base * 2 ** min(attempts - 1, 30))
    return (rng or random).uniform(ceiling / 2, ceiling)
