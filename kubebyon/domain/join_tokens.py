"""Join tokens (seed §2.3, §3.6): what the user holds, what is stored, what k3s needs.

The value a user gets is ``kbt_<id>.<secret>``: a real Kubernetes bootstrap token
(``<id>.<secret>``, reference §5) behind a prefix that says what it is. Only its SHA-256
is stored; ``display_prefix`` (``kbt_<id>``) tells tokens apart, and the id half is not
secret (it names the host Secret ``bootstrap-token-<id>``).

The secret half is derived, not stored: an HMAC of the token's ids under a key derived
from ``KUBEBYON_SECRET_KEY`` (``SecretBox.derive_key(DERIVATION_PURPOSE)``). The API hands
the value out once; the join-token reconciler derives the same secret to write the host
Secret, and again if the host loses it. Rotating the primary secret key changes the
derivation, so a Secret recreated after a rotation no longer matches tokens issued before
it (tokens live at most 7 days; the reconciler never rewrites an existing Secret).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

AUTHZ_RESOURCE = "tokens"  # the authorization engine's resource for join tokens
VALUE_PREFIX = "kbt_"
DERIVATION_PURPOSE = "join-token-secrets"
TTL_DEFAULT_SECONDS = 3600
TTL_MIN_SECONDS = 600  # 10 minutes
TTL_MAX_SECONDS = 7 * 86400
SECRET_NAME_PREFIX = "bootstrap-token-"  # noqa: S105 - a name prefix

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_BOOTSTRAP = r"([a-z0-9]{6})\.([a-z0-9]{16})"
_VALUE = re.compile(re.escape(VALUE_PREFIX) + _BOOTSTRAP)
_SECURE_TOKEN = re.compile(r"K10[0-9a-f]{64}::" + _BOOTSTRAP)


@dataclass(frozen=True)
class BootstrapToken:
    """A Kubernetes bootstrap token ``<id>.<secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``)."""

    id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.id}.{self.secret}"

    @property
    def value(self) -> str:
        """What the user holds."""
        return f"{VALUE_PREFIX}{self}"

    @property
    def display_prefix(self) -> str:
        return f"{VALUE_PREFIX}{self.id}"

    @property
    def secret_name(self) -> str:
        return f"{SECRET_NAME_PREFIX}{self.id}"


def new_bootstrap_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


def derive_bootstrap_token(key: bytes, join_token_id: str, bootstrap_id: str) -> BootstrapToken:
    """The token of join token ``join_token_id``: 16 base-36 digits (about 82 bits) of an
    HMAC-SHA256 of its ids."""
    digest = hmac.new(key, f"{join_token_id}:{bootstrap_id}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest, "big")
    digits = []
    for _ in range(16):
        number, digit = divmod(number, 36)
        digits.append(_ALPHABET[digit])
    return BootstrapToken(bootstrap_id, "".join(digits))


def parse_value(value: str) -> BootstrapToken | None:
    """The bootstrap token inside a join token value, or None if it is not one."""
    match = _VALUE.fullmatch(value)
    return BootstrapToken(match[1], match[2]) if match else None


def ttl_problem(ttl_seconds: int) -> str | None:
    if not TTL_MIN_SECONDS <= ttl_seconds <= TTL_MAX_SECONDS:
        return f"must be between {TTL_MIN_SECONDS} (10 minutes) and {TTL_MAX_SECONDS} (7 days)"
    return None


def k3s_ca_hash(bundle: bytes) -> str:
    """The CA hash of a k3s secure token, computed as k3s does (``hashCA`` in k3s
    ``pkg/clientaccess/token.go``) over the bytes the server serves at ``/cacerts`` — its
    server CA file, which is also what ``kube-root-ca.crt`` publishes on a k3s host.

    One certificate (k3s's own self-signed CA): SHA-256 of the bytes exactly as given.
    A bundle: SHA-256 of the DER of the root that the first certificate chains to through
    the others; when no such chain exists, of the bytes as given (as k3s falls back).
    Raises ValueError when ``bundle`` holds no PEM certificate."""
    certificates = x509.load_pem_x509_certificates(bundle)
    if len(certificates) > 1:
        root = _chain_root(certificates[0], certificates[1:])
        if root is not None:
            return hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    return hashlib.sha256(bundle).hexdigest()


def _is_root(certificate: x509.Certificate) -> bool:
    """k3s counts a certificate as a root when it has no authority key id or that id is
    its own subject key id."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return True
    try:
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return aki.value.key_identifier == ski.value.digest


def _chain_root(leaf: x509.Certificate, others: list[x509.Certificate]) -> x509.Certificate | None:
    current = leaf
    for _ in range(len(others)):
        issuer = next((c for c in others if _issued(current, c)), None)
        if issuer is None:
            return None
        if _is_root(issuer):
            return issuer
        current = issuer
    return None


def _issued(certificate: x509.Certificate, candidate: x509.Certificate) -> bool:
    if certificate.issuer != candidate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(candidate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def secure_k3s_token(ca_hash: str, token: BootstrapToken) -> str:
    """``K10<CA hash>::<id>.<secret>``: the agent checks the server's CA against the hash
    before it sends the token (the short form skips that check and is never used)."""
    secure = f"K10{ca_hash}::{token}"
    if not _SECURE_TOKEN.fullmatch(secure):
        raise ValueError("a secure k3s token needs a 64-digit lowercase hex CA hash")
    return secure
