"""OAuth2/OIDC sign-in, as plain rules: what a provider told us about a user, the
secrets of one sign-in attempt, and where the browser may land afterwards."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_GROUPS = 200
MAX_GROUP_LENGTH = 256
MAX_NEXT_LENGTH = 2048


@dataclass(frozen=True)
class ExternalIdentity:
    """A verified answer from an identity provider. ``subject`` is the provider's stable
    user id: it is stored to link the account but never written to audit or logs."""

    subject: str
    email: str | None
    email_verified: bool
    name: str
    groups: tuple[str, ...] = ()


class IdentityRejected(Exception):
    """The provider's answer is unusable or untrustworthy (bad code, failed ID-token
    check): the sign-in fails. Messages never hold a code, token or subject."""


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered with a server error."""


@dataclass(frozen=True)
class LoginAttempt:
    """Secrets of one sign-in: ``state`` binds the callback to this attempt, ``nonce``
    binds the ID token to it, ``code_verifier`` is the PKCE proof (RFC 7636)."""

    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def new(cls) -> LoginAttempt:
        # 64 url-safe characters: within PKCE's 43..128 and 384 bits of entropy.
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48))


def group_claims(claims: dict[str, Any]) -> tuple[str, ...]:
    """The ``groups`` claim, or ``roles`` when there is none; bounded strings only."""
    value = claims.get("groups")
    if value is None:
        value = claims.get("roles")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    names = (g for g in value if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_LENGTH)
    return tuple(names)[:MAX_GROUPS]


def is_true(value: object) -> bool:
    """``email_verified`` is a JSON boolean, but some providers send the string "true"."""
    return value is True or value == "true"


def safe_next(value: str | None) -> str | None:
    """A same-origin path to return to after sign-in, or None: never another host
    (``//evil.example``, ``/\\evil.example``, ``https://…``), so never an open redirect."""
    if not value or len(value) > MAX_NEXT_LENGTH or not value.startswith("/"):
        return None
    if value.startswith(("//", "/\\")) or "\\" in value:
        return None
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value
