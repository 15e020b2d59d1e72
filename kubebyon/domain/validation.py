"""Small input rules shared by the CLI and the API."""

from __future__ import annotations

import re

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def email_problem(email: str) -> str | None:
    if len(email) > 254 or not _EMAIL.match(email):
        return f"{email!r} is not a valid email address"
    return None


def normalize_email(email: str) -> str:
    """Keep the local part as typed; domains are case-insensitive."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def bounded_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """A list ``limit`` query parameter (seed §2.5/§2.7 style): absent, invalid or not
    positive -> ``default``; larger than ``maximum`` -> ``maximum``."""
    try:
        value = int(raw or "")
    except ValueError:
        return default
    return min(value, maximum) if value > 0 else default
