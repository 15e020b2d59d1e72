"""Admin-edited runtime settings (``system_settings`` table), as stored.

Secret values are stored encrypted (``*_encrypted`` fields hold SecretBox tokens) and
are never returned by the API: reads show ``*_configured`` instead (seed convention).
"""

from __future__ import annotations

from typing import Literal

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
