"""Password login, logout and the current user (seed: Auth / Identity)."""

from __future__ import annotations

from aiohttp import web

from api.auth import actor, current, remote_ip, require, unauthenticated
from api.body import read_json
from api.captcha import require_captcha
from api.errors import ApiError
from api.models.auth import LoginRequest, OkResponse, UserResponse
from api.openapi import RouteTable
from api.ratelimits import enforce
from api.responses import json_model, user_response
from api.sessions import attach_session, clear_session_cookie, start_session
from api.state import services
from kubebyon.db import audit
from kubebyon.domain.passwords import verify_password
from kubebyon.domain.validation import normalize_email

routes = RouteTable("auth")
BAD_CREDENTIALS = "invalid email or password"


@routes.route(
    "POST",
    "/api/auth/login",
    summary="Sign in with email and password",
    request=LoginRequest,
    response=UserResponse,
    auth="none",
    statuses=(400, 401, 403, 429),
)
async def login(request: web.Request) -> web.Response:
    svc = services(request)
    enforce(request, svc.auth_limiter, "login")
    body = await read_json(request, LoginRequest)
    await require_captcha(request, body.captcha_token)
    email = normalize_email(body.email)
    ip, agent = remote_ip(request), request.headers.get("User-Agent")
    db = svc.db
    user = await db.fetchrow(db.q.get_user_by_email, email)
    # Always verify (against a dummy hash when there is no user): same answer, same time.
    password_ok = verify_password(user["password_hash"] if user else None, body.password)
    result = "success"
    if user is None or not password_ok:
        result = "bad_credentials"
    elif user["status"] != "active":
        result = "banned"
    async with db.transaction() as conn:
        await conn.execute(
            db.q.insert_login_history,
            user["id"] if user else None,
            email,
            "password",
            result,
            ip,
            (agent or "")[:512],
        )
        who = actor(request)
        if result != "success":
            await audit.record(
                conn,
                audit.Actor(user["id"] if user else None, "anonymous", "password", ip),
                resource_type="session",
                action="login",
                result="failure",
                message=f"failed sign-in for {email}: {result.replace('_', ' ')}",
            )
        else:
            assert user is not None
            _, token, expires = await start_session(
                conn,
                user_id=user["id"],
                auth_method="password",
                ip=ip,
                user_agent=agent,
                idle_seconds=svc.settings.session_idle_hours * 3600,
            )
            await conn.execute(db.q.record_login, user["id"])
            who = audit.Actor(
                user["id"], "admin" if user["role"] == "admin" else "user", "password", ip
            )
            await audit.record(
                conn,
                who,
                resource_type="session",
                action="login",
                resource_id=user["id"],
                message=f"{email} signed in",
            )
    if result == "bad_credentials":
        raise ApiError(401, BAD_CREDENTIALS, "invalid_credentials")
    if result == "banned":
        raise ApiError(403, "this account is banned", "account_banned")
    assert user is not None
    fresh = await db.fetchrow(db.q.get_user, user["id"])
    assert fresh is not None
    response = user_response(fresh)
    await attach_session(request, response, token, expires)
    return response


@routes.route(
    "POST", "/api/auth/logout", summary="End the current session", response=OkResponse, auth="none"
)
async def logout(request: web.Request) -> web.Response:
    svc = services(request)
    principal = current(request)
    if principal is not None and principal.session_id is not None:
        async with svc.db.transaction() as conn:
            await conn.execute(svc.db.q.revoke_session, principal.session_id)
            await audit.record(
                conn,
                actor(request),
                resource_type="session",
                action="logout",
                resource_id=principal.user_id,
                message=f"{principal.email} signed out",
            )
    response = json_model(OkResponse())
    clear_session_cookie(response, secure=(await svc.system_settings.get()).secure_cookies)
    return response


async def _me(request: web.Request) -> web.Response:
    principal = require(request)
    db = services(request).db
    row = await db.fetchrow(db.q.get_user, principal.user_id)
    if row is None:
        raise unauthenticated()
    return user_response(row)


@routes.route(
    "GET", "/api/auth/me", summary="The signed-in user", response=UserResponse, statuses=(401,)
)
async def auth_me(request: web.Request) -> web.Response:
    return await _me(request)


@routes.route(
    "GET",
    "/api/console/me",
    summary="The signed-in user (console)",
    response=UserResponse,
    statuses=(401,),
)
async def console_me(request: web.Request) -> web.Response:
    return await _me(request)
