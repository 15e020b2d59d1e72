"""Models of the admin system settings (seed: Admin System Settings).

Secrets are write-only: a request applies ``x`` only together with ``x_changed: true``
(an empty ``x`` then clears it); responses carry ``x_configured`` instead. Read-only
fields of the response are accepted on write and ignored, so a client may send back
what it read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from api.models.auth import StrictModel
from kubebyon.domain.system_settings import (
    PROVIDER_NAME,
    HCaptchaConfig,
    OAuthProviderConfig,
    SmtpConfig,
    SystemSettings,
    base_url_problem,
    domain_name_problem,
    host_problem,
    normalize_base_url,
    normalize_domain_name,
    outbound_url_problem,
)
from kubebyon.domain.validation import email_problem

SECRET_MAX = 4096
READ_ONLY = "read-only: ignored on write"


def _checked(value: str | None, problem: str | None) -> str | None:
    if problem:
        raise ValueError(problem)
    return value


# --- reads -------------------------------------------------------------------------


class OAuthProviderOut(BaseModel):
    name: str
    kind: Literal["github", "google", "oidc"]
    display_name: str
    enabled: bool
    client_id: str
    client_secret_configured: bool
    issuer: str | None
    authorize_url: str | None
    token_url: str | None
    api_base_url: str | None
    scopes: list[str]


class HCaptchaOut(BaseModel):
    enabled: bool
    site_key: str
    secret_configured: bool


class SmtpOut(BaseModel):
    host: str
    port: int
    username: str
    from_address: str
    security: Literal["starttls", "tls", "none"]
    password_configured: bool


class SystemSettingsOut(BaseModel):
    public_base_url: str | None
    join_base_url: str | None
    managed_workload_ingress_base_domain: str | None
    oauth_providers: list[OAuthProviderOut]
    hcaptcha: HCaptchaOut
    smtp: SmtpOut
    updated_at: datetime | None


def provider_out(provider: OAuthProviderConfig) -> OAuthProviderOut:
    return OAuthProviderOut(
        **provider.model_dump(exclude={"client_secret_encrypted"}),
        client_secret_configured=bool(provider.client_secret_encrypted),
    )


def settings_out(settings: SystemSettings, updated_at: datetime | None) -> SystemSettingsOut:
    hcaptcha: HCaptchaConfig = settings.hcaptcha
    smtp: SmtpConfig = settings.smtp
    return SystemSettingsOut(
        public_base_url=settings.public_base_url,
        join_base_url=settings.join_base_url,
        managed_workload_ingress_base_domain=settings.managed_workload_ingress_base_domain,
        oauth_providers=[provider_out(p) for p in settings.oauth_providers],
        hcaptcha=HCaptchaOut(
            enabled=hcaptcha.enabled,
            site_key=hcaptcha.site_key,
            secret_configured=bool(hcaptcha.secret_encrypted),
        ),
        smtp=SmtpOut(
            **smtp.model_dump(exclude={"password_encrypted"}),
            password_configured=bool(smtp.password_encrypted),
        ),
        updated_at=updated_at,
    )


# --- writes ------------------------------------------------------------------------


class OAuthProviderIn(StrictModel):
    """One provider, identified by ``name``; the list in a PUT replaces the stored list."""

    name: str = Field(pattern=PROVIDER_NAME.pattern)
    kind: Literal["github", "google", "oidc"]
    display_name: str = Field("", max_length=100)
    enabled: bool = True
    client_id: str = Field("", max_length=512)
    client_secret: str | None = Field(None, max_length=SECRET_MAX)
    client_secret_changed: bool = False
    client_secret_configured: bool | None = Field(None, description=READ_ONLY)
    issuer: str | None = Field(None, max_length=2048)
    authorize_url: str | None = Field(None, max_length=2048)
    token_url: str | None = Field(None, max_length=2048)
    api_base_url: str | None = Field(None, max_length=2048)
    scopes: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("issuer", "authorize_url", "token_url", "api_base_url")
    @classmethod
    def _outbound(cls, value: str | None) -> str | None:
        if not value:
            return None
        # Kept exactly as typed: an ID token's ``iss`` must equal the issuer, slash included.
        return _checked(value, outbound_url_problem(value))

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not scope or len(scope) > 200 or any(c.isspace() for c in scope):
                raise ValueError("each scope must be a non-empty word without spaces")
        return value


class HCaptchaIn(StrictModel):
    enabled: bool = False
    site_key: str = Field("", max_length=200)
    secret: str | None = Field(None, max_length=SECRET_MAX)
    secret_changed: bool = False
    secret_configured: bool | None = Field(None, description=READ_ONLY)


class SmtpIn(StrictModel):
    host: str = Field("", max_length=253)
    port: int = Field(587, ge=1, le=65535)
    username: str = Field("", max_length=320)
    password: str | None = Field(None, max_length=SECRET_MAX)
    password_changed: bool = False
    password_configured: bool | None = Field(None, description=READ_ONLY)
    from_address: str = Field("", max_length=254)
    security: Literal["starttls", "tls", "none"] = "starttls"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        return _checked(value, value and host_problem(value)) or ""

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        value = value.strip()
        return _checked(value, value and email_problem(value)) or ""


class SystemSettingsUpdate(StrictModel):
    """Omitted (or ``null``) sections keep their stored values; inside ``hcaptcha`` and
    ``smtp`` only the fields sent change; ``oauth_providers`` replaces the whole list.
    An omitted URL or domain is kept, while ``null`` or ``""`` clears it."""

    public_base_url: str | None = Field(None, max_length=2048)
    join_base_url: str | None = Field(None, max_length=2048)
    managed_workload_ingress_base_domain: str | None = Field(None, max_length=253)
    oauth_providers: list[OAuthProviderIn] | None = Field(None, max_length=32)
    hcaptcha: HCaptchaIn | None = None
    smtp: SmtpIn | None = None
    updated_at: datetime | None = Field(None, description=READ_ONLY)

    @field_validator("public_base_url", "join_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        return _checked(normalize_base_url(value), base_url_problem(value))

    @field_validator("managed_workload_ingress_base_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        name = normalize_domain_name(value)
        return _checked(name, domain_name_problem(name))

    @field_validator("oauth_providers")
    @classmethod
    def _unique_names(cls, value: list[OAuthProviderIn] | None) -> list[OAuthProviderIn] | None:
        names = [p.name for p in value or ()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique: {', '.join(duplicates)}")
        return value
