"""What request handlers may reach: one typed ``Services`` object per application."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from api.openapi import RouteTable
from kubebyon.db.authz import Authorizer
from kubebyon.db.database import Database
from kubebyon.db.system_settings import SystemSettingsStore
from kubebyon.domain.kubectl import KubectlResult
from kubebyon.domain.oauth import ExternalIdentity
from kubebyon.domain.ratelimit import SlidingWindowLimiter
from kubebyon.domain.system_settings import OAuthProviderConfig
from kubebyon.health import HealthMonitor
from kubebyon.secretbox import SecretBox
from kubebyon.settings import Settings


class CaptchaVerifier(Protocol):
    """hCaptcha's siteverify, called synchronously by login and registration."""

    async def verify(
        self, *, verify_url: str, secret: str, token: str, remote_ip: str | None
    ) -> bool: ...


class OAuthClient(Protocol):
    """The identity provider side of SSO sign-in (authorization URL, code exchange).

    Raises ``kubebyon.domain.oauth.IdentityRejected`` when the provider's answer cannot be
    used or trusted, ``ProviderUnavailable`` when the provider cannot be reached.
    """

    async def authorization_url(
        self,
        provider: OAuthProviderConfig,
        *,
        state: str,
        nonce: str,
        code_verifier: str,
        redirect_uri: str,
    ) -> str: ...

    async def identify(
        self,
        provider: OAuthProviderConfig,
        *,
        client_secret: str,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        nonce: str,
    ) -> ExternalIdentity: ...


class KubectlRunner(Protocol):
    """The real kubectl, run by the console proxy on arguments already checked by
    ``kubebyon.domain.kubectl``. Raises ``KubectlUnavailable`` (no binary) and
    ``KubectlTimedOut`` (killed at its time limit)."""

    async def run(self, kubeconfig: str, args: Sequence[str]) -> KubectlResult: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    health: HealthMonitor
    tables: list[RouteTable]
    secrets: SecretBox
    system_settings: SystemSettingsStore
    join_limiter: SlidingWindowLimiter
    auth_limiter: SlidingWindowLimiter
    authorizer: Authorizer
    captcha: CaptchaVerifier | None = None
    oauth: OAuthClient | None = None
    kubectl: KubectlRunner | None = None
    now: Callable[[], datetime] = _utcnow
    policies: dict[AbstractRoute, str] = field(default_factory=dict)

    def route_policy(self, request: web.Request) -> str | None:
        return self.policies.get(request.match_info.route)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
