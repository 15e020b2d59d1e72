"""Models of the sign-in options page: OAuth providers and the public hCaptcha config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class AuthProvider(BaseModel):
    """What the login page needs to draw a button; nothing more (no client id)."""

    name: str
    display_name: str
    kind: Literal["github", "google", "oidc"]


class PublicCaptchaConfig(BaseModel):
    enabled: bool
    site_key: str


class AuthProvidersResponse(BaseModel):
    providers: list[AuthProvider]
    hcaptcha: PublicCaptchaConfig
