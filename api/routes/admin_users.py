"""Admin user management (seed: Admin Users): list, get, ban/activate, login history.

Banning takes effect on the next request: the session and API-key lookups only accept
active users. It also revokes the user's sessions, so re-activating an account does not
bring back cookies issued before the ban (the user signs in again). API keys are only
suspended: they were provisioned on purpose for automation and work again after
re-activation; the user (or an admin acting as them) can revoke them.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.auth import actor, require
from api.body import read_json, validation_details
from api.errors import ApiError
from api.models.admin_users import (
    AdminUserList,
    AdminUserOut,
    AdminUserResponse,
    LoginHistoryEntry,
    LoginHistoryQuery,
    LoginHistoryResponse,
    UserListQuery,
    UserStatusUpdate,
)
from api.openapi import RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.db import audit

routes = RouteTable("admin_users")
USERS = "/api/console/admin/users"
Q = TypeVar("Q", bound=BaseModel)


def read_query(request: web.Request, model: type[Q]) -> Q:
    """Known query parameters into ``model``; empty values count as absent."""
    values = {
        name: request.query[name]
        for name in model.model_fields
        if request.query.get(name, "") != ""
    }
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ApiError(
            400,
            f"{details[0]['field']}: {details[0]['message']}",
            "validation_error",
            details=details,
        ) from None


def _not_found() -> ApiError:
    return ApiError(404, "user not found", "not_found")


@routes.route(
    "GET",
    USERS,
    summary="List users, newest first (paged, searchable by email)",
    response=AdminUserList,
    auth="admin",
    statuses=(400, 401, 403),
    query=(
        ("page", "page number, from 1"),
        ("page_size", "1-100, default 20"),
        ("q", "email substring, case-insensitive"),
        ("status", "active | banned | deleted"),
    ),
)
async def list_users(request: web.Request) -> web.Response:
    query = read_query(request, UserListQuery)
    db = services(request).db
    total = await db.fetchval(db.q.admin_count_users, query.q, query.status)
    rows = await db.fetch(
        db.q.admin_list_users,
        query.q,
        query.status,
        query.page_size,
        (query.page - 1) * query.page_size,
    )
    body = AdminUserList(
        users=[AdminUserOut.model_validate(dict(row)) for row in rows],
        total=total,
        page=query.page,
        page_size=query.page_size,
    )
    return json_model(body)


@routes.route(
    "GET",
    USERS + "/{userID}",
    summary="One user",
    response=AdminUserResponse,
    auth="admin",
    statuses=(401, 403, 404),
)
async def get_user(request: web.Request) -> web.Response:
    db = services(request).db
    row = await db.fetchrow(db.q.admin_get_user, request.match_info["userID"])
    if row is None:
        raise _not_found()
    user = AdminUserOut.model_validate(dict(row))
    return json_model(AdminUserResponse(user=user))


@routes.route(
    "PUT",
    USERS + "/{userID}/status",
    summary="Ban or re-activate a user (takes effect immediately)",
    request=UserStatusUpdate,
    response=AdminUserResponse,
    auth="admin",
    statuses=(400, 401, 403, 404, 409),
)
async def set_user_status(request: web.Request) -> web.Response:
    principal = require(request)
    body = await read_json(request, UserStatusUpdate)
    user_id = request.match_info["userID"]
    db = services(request).db
    async with db.transaction() as conn:
        row = await conn.fetchrow(db.q.admin_lock_user, user_id)
        if row is None:
            raise _not_found()
        if row["status"] == "deleted":
            raise ApiError(409, "the account is deleted", "user_deleted")
        if body.status == "banned" and user_id == principal.user_id:
            raise ApiError(409, "you cannot ban your own account", "cannot_ban_self")
        if row["status"] != body.status:
            row = await conn.fetchrow(db.q.admin_set_user_status, user_id, body.status)
            assert row is not None
            message = f"{principal.email} activated {row['email']}"
            if body.status == "banned":
                revoked = await conn.fetch(db.q.revoke_user_sessions, user_id, None)
                message = f"{principal.email} banned {row['email']}; {len(revoked)} sessions ended"
            await audit.record(
                conn,
                actor(request),
                resource_type="user",
                action="ban" if body.status == "banned" else "activate",
                resource_id=user_id,
                message=message,
            )
    user = AdminUserOut.model_validate(dict(row))
    return json_model(AdminUserResponse(user=user))


@routes.route(
    "GET",
    USERS + "/{userID}/login-history",
    summary="Sign-in attempts of a user, newest first",
    response=LoginHistoryResponse,
    auth="admin",
    statuses=(400, 401, 403, 404),
    query=(("limit", "1-500, default 50"),),
)
async def login_history(request: web.Request) -> web.Response:
    query = read_query(request, LoginHistoryQuery)
    user_id = request.match_info["userID"]
    db = services(request).db
    if await db.fetchrow(db.q.admin_get_user, user_id) is None:
        raise _not_found()
    rows = await db.fetch(db.q.admin_login_history, user_id, query.limit)
    entries = [LoginHistoryEntry.model_validate(dict(row)) for row in rows]
    return json_model(LoginHistoryResponse(entries=entries))
