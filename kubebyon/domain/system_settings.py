"""Admin-edited runtime settings (``system_settings`` table), as stored.

Secret values are stored encrypted (``*_encrypted`` fields hold SecretBox tokens) and
are never returned by the API: reads show ``*_configured`` instead (seed convention).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field


class _Stored(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OAuthProviderConfig(_Stored):
    name: str  # url-safe identifier used in /api/auth/sso/{provider}/...
    kind: Literal["github", "google", "oidc"]
    display_name: str = ""
    enabled: bool = True
    client_id: str = ""
    client_secret_encrypted: str | None = None
    issuer: str | None = None  # OIDC discovery base (google and oidc)
    authorize_url: str | None = None  # github (overridable for tests and GHES)
    token_url: str | None = None
    api_base_url: str | None = None
    scopes: list[str] = Field(default_factory=list)


class HCaptchaConfig(_Stored):
    enabled: bool = False
    site_key: str = ""
    secret_encrypted: str | None = None


class SmtpConfig(_Stored):
    host: str = ""
    port: int = 587
    username: str = ""
    password_encrypted: str | None = None
    from_address: str = ""
    security: Literal["starttls", "tls", "none"] = "starttls"


class SystemSettings(_Stored):
    public_base_url: str | None = None
    join_base_url: str | None = None
    # Seed: base of the cluster-level CNAME targets for managed workload ingress.
    managed_workload_ingress_base_domain: str | None = None
    oauth_providers: list[OAuthProviderConfig] = Field(default_factory=list)
    hcaptcha: HCaptchaConfig = Field(default_factory=HCaptchaConfig)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)

    @property
    def secure_cookies(self) -> bool:
        return (self.public_base_url or "").startswith("https://")

    def provider(self, name: str) -> OAuthProviderConfig | None:
        for provider in self.oauth_providers:
            if provider.name == name and provider.enabled:
                return provider
        return None


# Validation of what admins type in, as plain rules (the API turns problems into 400s).

PROVIDER_NAME = re.compile(r"^[a-z0-9-]{1,32}$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def base_url_problem(url: str) -> str | None:
    """public_base_url / join_base_url: an http(s) origin, optionally with a trailing '/'.

    https is what production wants (Secure cookies follow it); http stays allowed for
    development setups.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.path not in ("", "/"):
        return "must not have a path"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or fragment"
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "has an invalid port"
    return None


def normalize_base_url(url: str) -> str:
    return url.rstrip("/")


def outbound_url_problem(url: str) -> str | None:
    """OIDC issuers and OAuth endpoints: https, except loopback hosts (tests, development)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        return "must use https (http only for localhost)"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


def domain_name_problem(name: str) -> str | None:
    """A DNS name of at least two labels (``apps.example.com``), not an IP address."""
    if len(name) > 253:
        return "must be at most 253 characters"
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return "must be a domain name such as apps.example.com"
    if labels[-1].isdigit():
        return "must be a domain name, not an IP address"
    return None


def normalize_domain_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def host_problem(host: str) -> str | None:
    """An SMTP host: a host name (``localhost`` included) or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    labels = host.lower().rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return "must be a host name or an IP address"
    return None
