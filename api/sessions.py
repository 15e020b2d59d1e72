"""Creating and ending browser sessions (cookie ``kubebyon_session``)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from api.state import services
from kubebyon.db.database import Conn
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.ids import new_id
from kubebyon.domain.tokens import SESSION_COOKIE, new_session_token, token_hash


def set_session_cookie(
    response: web.StreamResponse, token: str, expires_at: datetime, *, secure: bool
) -> None:
    max_age = max(int((expires_at - datetime.now(UTC)).total_seconds()), 0)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=secure,
    )


async def attach_session(
    request: web.Request, response: web.StreamResponse, token: str, expires_at: datetime
) -> None:
    """Set the session cookie, Secure when the console is served over https."""
    system = await services(request).system_settings.get()
    set_session_cookie(response, token, expires_at, secure=system.secure_cookies)


def clear_session_cookie(response: web.StreamResponse, *, secure: bool) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")


async def start_session(
    conn: Conn,
    *,
    user_id: str,
    auth_method: str,
    ip: str | None,
    user_agent: str | None,
    idle_seconds: float,
    groups: list[str] | None = None,
) -> tuple[str, str, datetime]:
    """(session id, token for the cookie, expiry). Only the token's hash is stored."""
    token = new_session_token()
    row = await conn.fetchrow(
        Q.insert_session,
        new_id("ses"),
        token_hash(token),
        user_id,
        auth_method,
        groups or [],
        ip,
        (user_agent or "")[:512],
        idle_seconds,
    )
    assert row is not None
    return row["id"], token, row["expires_at"]
