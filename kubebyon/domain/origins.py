"""Browser-security decisions (seed: 浏览器安全、CORS 与限流), as plain functions."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    suffix = "" if port in (None, default) else f":{port}"
    return f"{parts.scheme}://{host}{suffix}"


def trusted_cookie_origins(
    own_origin: str | None, public_base_url: str | None, cors_allowed: Iterable[str]
) -> set[str]:
    """The request's own origin, public_base_url and explicit CORS origins; ``*`` never."""
    trusted = {origin_of(o) for o in cors_allowed if o != "*"}
    if own_origin:
        trusted.add(origin_of(own_origin))
    if public_base_url:
        trusted.add(origin_of(public_base_url))
    trusted.discard(None)
    return {o for o in trusted if o}


def csrf_problem(
    *,
    method: str,
    origin: str | None,
    referer: str | None,
    sec_fetch_site: str | None,
    trusted: set[str],
) -> str | None:
    """Why a cookie-authenticated request must be refused, or None.

    Browsers send ``Origin`` (or at least ``Referer``) on unsafe requests; a request with
    neither comes from a non-browser client, which cannot be driven by another site.
    """
    if method.upper() not in UNSAFE_METHODS:
        return None
    if (sec_fetch_site or "").lower() == "cross-site":
        return "cross-site request refused (Sec-Fetch-Site: cross-site)"
    if origin is not None and origin != "null":
        return None if origin_of(origin) in trusted else f"origin {origin} is not trusted"
    if origin == "null":
        return "opaque origin refused"
    if referer:
        source = origin_of(referer)
        return None if source in trusted else "referer origin is not trusted"
    return None


def cors_headers(origin: str | None, allowed: Iterable[str]) -> dict[str, str]:
    """Explicit origins get credentials; ``*`` never does."""
    if not origin:
        return {}
    allowed = list(allowed)
    normalized = origin_of(origin)
    if normalized is not None and normalized in {origin_of(o) for o in allowed if o != "*"}:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*"}
    return {}
