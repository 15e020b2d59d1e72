"""Per-client-IP rate limits (seed defaults: join 3 s/5, auth 30 s/5 per endpoint)."""

from __future__ import annotations

from aiohttp import web

from api.auth import remote_ip
from api.errors import ApiError
from kubebyon.domain.ratelimit import SlidingWindowLimiter


def enforce(request: web.Request, limiter: SlidingWindowLimiter, scope: str) -> None:
    wait = limiter.check(f"{remote_ip(request)}|{scope}")
    if wait is not None:
        raise ApiError(
            429,
            "too many requests; retry later",
            "rate_limited",
            headers={"Retry-After": SlidingWindowLimiter.retry_after_header(wait)},
        )
