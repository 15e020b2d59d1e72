"""Prefixed, opaque, roughly time-ordered identifiers (``cl_…``, ``usr_…``, ``job_…``).

48 bits of milliseconds then 80 random bits, in lowercase Crockford base32, so ids
sort by creation time (a stable tie-breaker after ``created_at``) and are valid in
DNS labels and Kubernetes names.
"""

from __future__ import annotations

import secrets
import time

PREFIXES = frozenset(
    {"cl", "usr", "tok", "node", "nevt", "op", "job", "ord", "plan", "key", "hb", "ses", "evt"}
    | {"code", "msg"}  # e-mail codes, outbox messages
)
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{prefix}_{_encode(millis & (2**48 - 1), 10)}{_encode(secrets.randbits(80), 16)}"


def has_prefix(value: str, prefix: str) -> bool:
    head, sep, tail = value.partition("_")
    return bool(sep) and head == prefix and len(tail) == 26 and all(c in _ALPHABET for c in tail)
