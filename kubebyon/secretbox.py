"""Encryption at rest for third-party secrets (Fernet, with key rotation).

``KUBEBYON_SECRET_KEY`` holds one or more comma-separated Fernet keys: the first
encrypts, every key decrypts, so a new key is rolled in by prepending it and the old
one dropped after ``kubebyon rotate-secrets`` (a later feature) has re-encrypted rows.
When unset, a key is generated once into ``<data_dir>/secret.key`` with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretKeyError(Exception):
    pass


def load_or_create_keys(configured: str | None, data_dir: Path) -> list[bytes]:
    if configured:
        keys = [k.strip().encode() for k in configured.split(",") if k.strip()]
        for key in keys:
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise SecretKeyError(
                    "KUBEBYON_SECRET_KEY: each key must be 32 url-safe base64-encoded bytes "
                    "(generate one with `python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from None
        return keys
    path = data_dir / "secret.key"
    if path.exists():
        key = path.read_bytes().strip()
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SecretKeyError(
                f"{path} is not a valid secret key; restore it from backup (secrets encrypted "
                "with it cannot be read without it)"
            ) from None
        return [key]
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return [key]


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self.primary = keys[0]

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (e.g. peppering e-mail codes), derived from the
        primary key with HKDF: no extra secret to manage. It changes when the primary key
        is rotated, so use it only for short-lived values."""
        hkdf = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"kubebyon:{purpose}".encode()
        )
        return hkdf.derive(self.primary)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with the configured keys"
            ) from None
