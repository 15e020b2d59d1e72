"""Password registration and reset by e-mail code (seed: Auth / Identity, §4).

Codes are six digits, stored as keyed hashes (pepper derived from the secret key),
valid for ten minutes, single use, dead after five wrong tries; a new code replaces
the previous one. Mail is written to the outbox in the request's transaction and sent
by the notifications reconciler, never inside the request.

Neither send-code endpoint reveals whether an address has an account: register/send-code
mails an existing account a notice instead of a code; reset-password/send-code mails
nothing to an unknown address. Both answer the same in every case.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from api.auth import actor, remote_ip
from api.body import read_json
from api.captcha import require_captcha
from api.errors import ApiError
from api.models.auth import OkResponse, UserResponse
from api.models.registration import (
    CodeSentResponse,
    RegisterRequest,
    ResetPasswordRequest,
    SendCodeRequest,
)
from api.openapi import RouteTable
from api.ratelimits import enforce
from api.responses import json_model, user_response
from api.sessions import attach_session, start_session
from api.state import Services, services
from kubebyon.db import audit
from kubebyon.db.database import Conn
from kubebyon.db.outbox import enqueue_mail
from kubebyon.domain.ids import new_id
from kubebyon.domain.passwords import hash_password, password_problem
from kubebyon.domain.tokens import email_code_hash, new_email_code, same_digest
from kubebyon.domain.validation import email_problem, normalize_email

routes = RouteTable("registration")

CODE_TTL_SECONDS = 600
CODE_MAX_ATTEMPTS = 5
REGISTER, RESET = "register", "reset_password"


def _email(raw: str) -> str:
    email = normalize_email(raw)
    problem = email_problem(email)
    if problem:
        raise ApiError(400, problem, "invalid_email")
    return email


def _check_password(password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise ApiError(400, problem, "weak_password")


def _invalid_code() -> ApiError:
    return ApiError(
        400,
        "the verification code is wrong, expired or already used; request a new one",
        "invalid_verification_code",
    )


def _pepper(svc: Services) -> bytes:
    return svc.secrets.derive_key("email-code")


async def _issue_code(conn: Conn, svc: Services, email: str, purpose: str) -> str:
    code = new_email_code()
    await conn.execute(
        svc.db.q.insert_email_code,
        new_id("code"),
        email,
        purpose,
        email_code_hash(code, _pepper(svc)),
        CODE_TTL_SECONDS,
    )
    return code


async def _take_code(conn: Conn, svc: Services, email: str, purpose: str, code: str) -> bool:
    """Consume the live code if ``code`` matches it; a mismatch spends one try."""
    row = await conn.fetchrow(svc.db.q.lock_live_email_code, email, purpose, CODE_MAX_ATTEMPTS)
    if row is None:
        return False
    if not same_digest(row["code_hash"], email_code_hash(code.strip(), _pepper(svc))):
        await conn.execute(svc.db.q.count_email_code_attempt, row["id"])
        return False
    await conn.execute(svc.db.q.consume_email_code, row["id"])
    return True


async def _mail_code(conn: Conn, svc: Services, email: str, purpose: str) -> None:
    code = await _issue_code(conn, svc, email, purpose)
    minutes = CODE_TTL_SECONDS // 60
    if purpose == REGISTER:
        subject = "Your KubeBYON verification code"
        text = f"Your verification code is {code}.\n\nEnter it to finish creating your account."
    else:
        subject = "Your KubeBYON password reset code"
        text = f"Your password reset code is {code}.\n\nEnter it with your new password."
    text += (
        f"\nIt expires in {minutes} minutes and works once.\n\n"
        "If you did not ask for this code, ignore this message.\n"
    )
    await enqueue_mail(conn, svc.secrets, to=email, subject=subject, body=text)


async def _mail_account_exists(conn: Conn, svc: Services, email: str) -> None:
    base = (await svc.system_settings.get()).public_base_url
    where = f" at {base.rstrip('/')}" if base else ""
    text = (
        f"Someone (probably you) tried to create a KubeBYON account with this address, "
        f'which already has one.\n\nSign in{where}, or use "Forgot password" to choose a '
        "new password.\n\nIf this was not you, ignore this message; nothing has changed.\n"
    )
    await enqueue_mail(
        conn, svc.secrets, to=email, subject="You already have a KubeBYON account", body=text
    )


def _code_sent() -> web.Response:
    return web.json_response(CodeSentResponse(expires_in_seconds=CODE_TTL_SECONDS).model_dump())


@routes.route(
    "POST",
    "/api/auth/register/send-code",
    summary="Mail a registration code to an address",
    request=SendCodeRequest,
    response=CodeSentResponse,
    auth="none",
    statuses=(400, 429),
)
async def register_send_code(request: web.Request) -> web.Response:
    svc = services(request)
    enforce(request, svc.auth_limiter, "register_send_code")
    body = await read_json(request, SendCodeRequest)
    await require_captcha(request, body.captcha_token)
    email = _email(body.email)
    async with svc.db.transaction() as conn:
        if await conn.fetchrow(svc.db.q.get_user_by_email, email) is not None:
            await _mail_account_exists(conn, svc, email)
        else:
            await _mail_code(conn, svc, email, REGISTER)
    return _code_sent()


@routes.route(
    "POST",
    "/api/auth/register",
    summary="Create an account with a mailed code, and sign in",
    request=RegisterRequest,
    response=UserResponse,
    auth="none",
    statuses=(400, 409, 429),
)
async def register(request: web.Request) -> web.Response:
    svc = services(request)
    enforce(request, svc.auth_limiter, "register")
    body = await read_json(request, RegisterRequest)
    await require_captcha(request, body.captcha_token)
    email = _email(body.email)
    _check_password(body.password)
    ip, agent = remote_ip(request), request.headers.get("User-Agent")
    db = svc.db
    user: asyncpg.Record | None = None
    try:
        async with db.transaction() as conn:
            # The code is checked first: without one, nobody learns whether an account exists.
            if not await _take_code(conn, svc, email, REGISTER, body.email_verification_code):
                outcome = "bad_code"
            elif await conn.fetchrow(db.q.get_user_by_email, email) is not None:
                outcome = "exists"
            else:
                outcome = "created"
                user = await conn.fetchrow(
                    db.q.insert_registered_user,
                    new_id("usr"),
                    email,
                    hash_password(body.password),
                    (body.display_name or "").strip(),
                )
                assert user is not None
                await audit.record(
                    conn,
                    audit.Actor(user["id"], "user", "password", ip),
                    resource_type="user",
                    action="register",
                    resource_id=user["id"],
                    message=f"{email} registered",
                )
                _, token, expires = await start_session(
                    conn,
                    user_id=user["id"],
                    auth_method="password",
                    ip=ip,
                    user_agent=agent,
                    idle_seconds=svc.settings.session_idle_hours * 3600,
                )
    except asyncpg.UniqueViolationError:
        outcome = "exists"  # registered concurrently
    if outcome == "bad_code":
        raise _invalid_code()
    if outcome == "exists":
        raise ApiError(409, "an account with this email already exists", "email_taken")
    assert user is not None
    response = user_response(user)
    await attach_session(request, response, token, expires)
    return response


@routes.route(
    "POST",
    "/api/auth/reset-password/send-code",
    summary="Mail a password reset code to an account's address",
    request=SendCodeRequest,
    response=CodeSentResponse,
    auth="none",
    statuses=(400, 429),
)
async def reset_password_send_code(request: web.Request) -> web.Response:
    # Not behind the captcha: the seed lists only login and the two register calls.
    svc = services(request)
    enforce(request, svc.auth_limiter, "reset_password_send_code")
    body = await read_json(request, SendCodeRequest)
    email = _email(body.email)
    async with svc.db.transaction() as conn:
        if await conn.fetchrow(svc.db.q.get_user_by_email, email) is not None:
            await _mail_code(conn, svc, email, RESET)
    return _code_sent()


@routes.route(
    "POST",
    "/api/auth/reset-password",
    summary="Set a new password with a mailed code; signs out every session",
    request=ResetPasswordRequest,
    response=OkResponse,
    auth="none",
    statuses=(400, 429),
)
async def reset_password(request: web.Request) -> web.Response:
    svc = services(request)
    enforce(request, svc.auth_limiter, "reset_password")
    body = await read_json(request, ResetPasswordRequest)
    email = _email(body.email)
    _check_password(body.new_password)
    db = svc.db
    async with db.transaction() as conn:
        user = await conn.fetchrow(db.q.get_user_by_email, email)
        ok = await _take_code(conn, svc, email, RESET, body.email_verification_code)
        if ok and user is not None:
            await conn.execute(
                db.q.reset_user_password, user["id"], hash_password(body.new_password)
            )
            await conn.execute(db.q.revoke_user_sessions, user["id"], None)
            await audit.record(
                conn,
                audit.Actor(
                    user["id"],
                    "admin" if user["role"] == "admin" else "user",
                    "email_code",
                    remote_ip(request),
                ),
                resource_type="user",
                action="reset_password",
                resource_id=user["id"],
                message=f"{email} reset their password; all sessions signed out",
            )
    if not ok or user is None:
        raise _invalid_code()
    return json_model(OkResponse())


@routes.route(
    "POST",
    "/api/console/admin/users/{userID}/reset-password",
    summary="Mail a password reset code to a user (admin)",
    response=CodeSentResponse,
    auth="admin",
    statuses=(401, 403, 404),
)
async def admin_reset_password(request: web.Request) -> web.Response:
    svc = services(request)
    user_id = request.match_info["userID"]
    async with svc.db.transaction() as conn:
        user = await conn.fetchrow(svc.db.q.get_user, user_id)
        if user is None:
            raise ApiError(404, "user not found", "not_found")
        await _mail_code(conn, svc, user["email"], RESET)
        await audit.record(
            conn,
            actor(request),
            resource_type="user",
            action="reset_password",
            resource_id=user_id,
            message=f"an admin sent a password reset code to {user['email']}",
        )
    return _code_sent()
