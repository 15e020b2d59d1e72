"""Secrets handed to users: session ids, API keys, e-mail codes. Only hashes are stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SESSION_COOKIE = "kubebyon_session"
API_KEY_PREFIX = "kbk_"
API_KEY_DISPLAY_LENGTH = 12  # "kbk_" + 8 characters: enough to tell keys apart


def token_hash(token: str) -> bytes:
    """SHA-256 suffices for random 256-bit tokens: nothing to brute-force."""
    return hashlib.sha256(token.encode()).digest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_display_prefix(key: str) -> str:
    return key[:API_KEY_DISPLAY_LENGTH]


def new_email_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def email_code_hash(code: str, pepper: bytes) -> bytes:
    """Six digits are a small space: keyed with a server secret so a leaked table is not
    enough to recover live codes."""
    return hmac.new(pepper, code.encode(), hashlib.sha256).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
