"""Who is calling: session cookie or API key, resolved once per request.

Route policies come from the route tables (``RouteSpec.auth``): ``none`` (public),
``session`` (any signed-in principal), ``admin`` (platform admins). Every path under
``/api/console/`` requires a principal even when no route matches, so anonymous
callers learn nothing about the console's surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from api.errors import ApiError
from api.sessions import set_session_cookie
from api.state import services
from kubebyon.db.audit import Actor
from kubebyon.domain.authz import Subjects, subjects_of
from kubebyon.domain.network import client_ip
from kubebyon.domain.tokens import API_KEY_PREFIX, SESSION_COOKIE, token_hash

CONSOLE_PREFIX = "/api/console/"
PRINCIPAL = web.RequestKey("principal", object)  # Principal | None


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    role: str  # admin | user (account role)
    method: str  # session | api_key
    display_name: str = ""
    session_id: str | None = None
    api_key_id: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def subjects(self) -> Subjects:
        return subjects_of(self.user_id, self.email, self.groups)


def bearer_credential(header: str | None) -> str | None:
    """``Bearer <key>``, or the bare ``<key>`` Kite clients send."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if rest and scheme.lower() == "bearer":
        return rest.strip() or None
    return header.strip() if not rest else None


def remote_ip(request: web.Request) -> str:
    settings = services(request).settings
    return client_ip(
        request.remote, request.headers.get("X-Forwarded-For"), settings.trusted_proxy_cidrs
    )


def current(request: web.Request) -> Principal | None:
    value = request.get(PRINCIPAL)
    return value if isinstance(value, Principal) else None


def unauthenticated() -> ApiError:
    """Also for a principal whose account vanished between authentication and the write."""
    return ApiError(401, "authentication required", "unauthenticated")


def require(request: web.Request) -> Principal:
    principal = current(request)
    if principal is None:
        raise unauthenticated()
    return principal


def actor(request: web.Request) -> Actor:
    principal = current(request)
    ip = remote_ip(request)
    if principal is None:
        return Actor(None, "anonymous", "none", ip)
    return Actor(principal.user_id, "admin" if principal.is_admin else "user", principal.method, ip)


async def _resolve(request: web.Request) -> Principal | None:
    svc = services(request)
    db = svc.db
    credential = bearer_credential(request.headers.get("Authorization"))
    if credential is not None:
        if not credential.startswith(API_KEY_PREFIX):
            return None
        row = await db.fetchrow(db.q.api_key_principal, token_hash(credential))
        if row is None:
            return None
        return Principal(
            row["user_id"],
            row["email"],
            row["role"],
            "api_key",
            row["display_name"],
            api_key_id=row["key_id"],
        )
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    settings = svc.settings
    row = await db.fetchrow(
        db.q.session_principal,
        token_hash(cookie),
        settings.session_idle_hours * 3600,
        settings.session_max_hours * 3600,
    )
    if row is None:
        return None
    if row["extended_until"] is not None:
        request["session_extended_until"] = row["extended_until"]
    return Principal(
        row["user_id"],
        row["email"],
        row["role"],
        "session",
        row["display_name"],
        session_id=row["session_id"],
        groups=tuple(row["groups"] or ()),
    )


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = await _resolve(request)
    request[PRINCIPAL] = principal
    policy = services(request).route_policy(request)
    if policy is None and request.path.startswith(CONSOLE_PREFIX):
        policy = "session"
    if policy not in (None, "none") and principal is None:
        if request.headers.get("Authorization"):
            raise ApiError(401, "invalid or expired API key", "unauthenticated")
        raise unauthenticated()
    if policy == "admin" and principal is not None and not principal.is_admin:
        raise ApiError(403, "admin role required", "forbidden")
    response = await handler(request)
    extended = request.get("session_extended_until")
    if extended is not None and SESSION_COOKIE not in response.cookies:
        settings = await services(request).system_settings.get()
        set_session_cookie(
            response, request.cookies[SESSION_COOKIE], extended, secure=settings.secure_cookies
        )
    return response
