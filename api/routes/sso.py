"""OAuth2/OIDC single sign-on (seed §4): the sign-in options, the redirect to the
provider and the provider's callback.

The login step keeps the attempt's secrets server-side (``oauth_states``: the state
hashed, the PKCE verifier encrypted, ten minutes to live) and binds the attempt to the
browser with a short-lived cookie holding the state, so a callback URL captured in one
browser cannot sign another browser in (login CSRF). The callback consumes the state
exactly once. Accounts are matched by the provider's subject, else by a verified email;
an unverified email never reaches an existing account.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web
from asyncpg import Record

from api.auth import remote_ip
from api.browser import own_origin
from api.errors import ApiError
from api.models.sso import AuthProvider, AuthProvidersResponse, PublicCaptchaConfig
from api.openapi import RouteTable
from api.sessions import attach_session, start_session
from api.state import OAuthClient, Services, services
from kubebyon.db import audit
from kubebyon.db.database import Conn
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.ids import new_id
from kubebyon.domain.oauth import (
    ExternalIdentity,
    IdentityRejected,
    LoginAttempt,
    ProviderUnavailable,
    safe_next,
)
from kubebyon.domain.system_settings import OAuthProviderConfig, SystemSettings
from kubebyon.domain.tokens import same_digest, token_hash
from kubebyon.domain.validation import normalize_email
from kubebyon.secretbox import SecretKeyError

routes = RouteTable("sso")
log = structlog.get_logger("kubebyon.sso")

STATE_COOKIE = "kubebyon_sso_state"
STATE_COOKIE_PATH = "/api/auth/sso/"
STATE_TTL_SECONDS = 600
KIND_NAMES = {"github": "GitHub", "google": "Google"}
NO_STORE = {"Cache-Control": "no-store"}


def display_name(provider: OAuthProviderConfig) -> str:
    return provider.display_name or KIND_NAMES.get(provider.kind, provider.name)


@routes.route(
    "GET",
    "/api/auth/providers",
    summary="Sign-in options: enabled OAuth providers and the public hCaptcha settings",
    response=AuthProvidersResponse,
    auth="none",
)
async def providers(request: web.Request) -> web.Response:
    system = await services(request).system_settings.get()
    captcha = system.hcaptcha
    body = AuthProvidersResponse(
        providers=[
            AuthProvider(name=p.name, display_name=display_name(p), kind=p.kind)
            for p in system.oauth_providers
            if p.enabled
        ],
        hcaptcha=PublicCaptchaConfig(
            enabled=captcha.enabled, site_key=captcha.site_key if captcha.enabled else ""
        ),
    )
    return web.json_response(body.model_dump())


def _provider(
    svc: Services, system: SystemSettings, name: str
) -> tuple[OAuthProviderConfig, OAuthClient, str]:
    """(provider, client, decrypted client secret); 404 for unknown or disabled names."""
    provider = system.provider(name)
    if provider is None:
        raise ApiError(404, f"no sign-in provider named {name!r}", "provider_not_found")
    unusable = ApiError(
        503, f"sign-in with {display_name(provider)} is not fully configured", "sso_unavailable"
    )
    if svc.oauth is None or not provider.client_id or not provider.client_secret_encrypted:
        raise unusable
    try:
        return provider, svc.oauth, svc.secrets.decrypt(provider.client_secret_encrypted)
    except SecretKeyError:
        raise unusable from None


def _unreachable(provider: OAuthProviderConfig, exc: ProviderUnavailable) -> ApiError:
    log.warning("sign-in provider unavailable", provider=provider.name, reason=str(exc))
    return ApiError(
        502, f"{display_name(provider)} cannot be reached right now; try again", "sso_unavailable"
    )


@routes.route(
    "GET",
    "/api/auth/sso/{provider}/login",
    summary="Start signing in with an OAuth/OIDC provider (302 to the provider)",
    auth="none",
    statuses=(404, 502, 503),
    query=(("next", "same-origin path to land on after signing in (default /)"),),
)
async def sso_login(request: web.Request) -> web.Response:
    svc = services(request)
    system = await svc.system_settings.get()
    provider, oauth, _ = _provider(svc, system, request.match_info["provider"])
    attempt = LoginAttempt.new()
    base = (system.public_base_url or own_origin(request)).rstrip("/")
    redirect_uri = f"{base}/api/auth/sso/{provider.name}/callback"
    try:
        url = await oauth.authorization_url(
            provider,
            state=attempt.state,
            nonce=attempt.nonce,
            code_verifier=attempt.code_verifier,
            redirect_uri=redirect_uri,
        )
    except ProviderUnavailable as exc:
        raise _unreachable(provider, exc) from None
    await svc.db.execute(
        svc.db.q.insert_oauth_state,
        token_hash(attempt.state),
        provider.name,
        svc.secrets.encrypt(attempt.code_verifier),
        attempt.nonce,
        redirect_uri,
        safe_next(request.query.get("next")),
        STATE_TTL_SECONDS,
    )
    response = web.Response(status=302, headers={"Location": url, **NO_STORE})
    response.set_cookie(
        STATE_COOKIE,
        attempt.state,
        max_age=STATE_TTL_SECONDS,
        path=STATE_COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=system.secure_cookies,
    )
    return response


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    reason: str  # for login history and the audit message


@routes.route(
    "GET",
    "/api/auth/sso/{provider}/callback",
    summary="Finish signing in with a provider: start a session and 302 into the console",
    auth="none",
    statuses=(400, 403, 404, 502, 503),
    query=(
        ("code", "authorization code from the provider"),
        ("state", "the state sent to the provider by the login step"),
        ("error", "set by the provider when sign-in was declined"),
    ),
)
async def sso_callback(request: web.Request) -> web.Response:
    svc = services(request)
    db = svc.db
    system = await svc.system_settings.get()
    provider, oauth, client_secret = _provider(svc, system, request.match_info["provider"])
    state = request.query.get("state", "")
    # The attempt must come back to the browser that started it (login CSRF).
    if not state or not same_digest(state.encode(), request.cookies.get(STATE_COOKIE, "").encode()):
        raise ApiError(
            400, "this sign-in was not started in this browser; start again", "invalid_state"
        )
    attempt = await db.fetchrow(db.q.consume_oauth_state, token_hash(state), provider.name)
    if attempt is None:
        raise ApiError(
            400, "this sign-in is invalid, expired or already used; start again", "invalid_state"
        )
    if "error" in request.query:
        if request.query["error"] == "access_denied":
            raise ApiError(400, f"sign-in at {display_name(provider)} was declined", "sso_denied")
        raise ApiError(400, f"{display_name(provider)} reported a sign-in error", "sso_failed")
    code = request.query.get("code")
    if not code:
        raise ApiError(400, "the provider sent no authorization code", "invalid_request")
    try:
        identity = await oauth.identify(
            provider,
            client_secret=client_secret,
            code=code,
            code_verifier=svc.secrets.decrypt(attempt["code_verifier"]),
            redirect_uri=attempt["redirect_uri"],
            nonce=attempt["nonce"],
        )
    except ProviderUnavailable as exc:
        raise _unreachable(provider, exc) from None
    except IdentityRejected as exc:
        log.info("sign-in answer rejected", provider=provider.name, reason=str(exc))
        await _record_failure(request, provider, None, None, "rejected by verification")
        raise ApiError(400, str(exc), "sso_rejected") from None

    ip, agent = remote_ip(request), request.headers.get("User-Agent")
    method = f"oauth:{provider.name}"
    async with db.transaction() as conn:
        user, refusal = await _account(conn, provider, identity, ip)
        if refusal is None:
            assert user is not None
            _, token, expires = await start_session(
                conn,
                user_id=user["id"],
                auth_method=method,
                ip=ip,
                user_agent=agent,
                idle_seconds=svc.settings.session_idle_hours * 3600,
                groups=list(identity.groups),
            )
            await conn.execute(db.q.record_login, user["id"])
            await conn.execute(
                db.q.insert_login_history,
                user["id"],
                user["email"],
                method,
                "success",
                ip,
                (agent or "")[:512],
            )
            await audit.record(
                conn,
                _actor(user, ip),
                resource_type="session",
                action="login",
                resource_id=user["id"],
                message=f"{user['email']} signed in with {display_name(provider)}",
            )
    if refusal is not None:
        await _record_failure(
            request, provider, user["id"] if user else None, identity.email, refusal.reason
        )
        raise ApiError(refusal.status, refusal.message, refusal.code)
    response = web.Response(
        status=302, headers={"Location": attempt["next_path"] or "/", **NO_STORE}
    )
    await attach_session(request, response, token, expires)
    response.del_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return response


def _actor(user: Record, ip: str) -> audit.Actor:
    return audit.Actor(user["id"], "admin" if user["role"] == "admin" else "user", "oauth", ip)


async def _account(
    conn: Conn, provider: OAuthProviderConfig, identity: ExternalIdentity, ip: str
) -> tuple[Record | None, Refusal | None]:
    """The account this identity signs in to: the one already linked to it, else the one
    with its verified email (linked now), else a new one. Refusals are decided before
    anything is written."""
    name = display_name(provider)
    user = await conn.fetchrow(Q.get_identity_user, provider.name, identity.subject)
    linked = user is not None
    if not linked:
        if identity.email is None:
            return None, Refusal(
                400, "email_required", f"{name} did not share an email address", "no email"
            )
        if not identity.email_verified:
            return None, Refusal(
                400,
                "email_not_verified",
                f"{name} has not verified this email address, so it cannot be used to sign in",
                "email not verified",
            )
        user = await conn.fetchrow(Q.get_user_by_email, normalize_email(identity.email))
    if user is not None and user["status"] != "active":
        return user, Refusal(403, "account_banned", "this account is banned", "banned")
    if user is None:
        assert identity.email is not None
        user = await conn.fetchrow(
            Q.insert_oauth_user,
            new_id("usr"),
            normalize_email(identity.email),
            identity.name.strip()[:100],
        )
        assert user is not None
        await audit.record(
            conn,
            _actor(user, ip),
            resource_type="user",
            action="register",
            resource_id=user["id"],
            message=f"{user['email']} registered by signing in with {name}",
        )
    elif not linked:
        await audit.record(
            conn,
            _actor(user, ip),
            resource_type="user",
            action="link_identity",
            resource_id=user["id"],
            message=f"{user['email']} linked a {name} sign-in to the account (verified email)",
        )
    if not linked:
        await conn.execute(
            Q.link_identity, provider.name, identity.subject, user["id"], identity.email
        )
    return user, None


async def _record_failure(
    request: web.Request,
    provider: OAuthProviderConfig,
    user_id: str | None,
    email: str | None,
    reason: str,
) -> None:
    svc = services(request)
    ip = remote_ip(request)
    async with svc.db.transaction() as conn:
        await conn.execute(
            Q.insert_login_history,
            user_id,
            email,
            f"oauth:{provider.name}",
            reason.replace(" ", "_"),
            ip,
            (request.headers.get("User-Agent") or "")[:512],
        )
        who = f" for {email}" if email else ""
        await audit.record(
            conn,
            audit.Actor(user_id, "anonymous", "oauth", ip),
            resource_type="session",
            action="login",
            result="failure",
            message=f"failed sign-in with {display_name(provider)}{who}: {reason}",
        )
