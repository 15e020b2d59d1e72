"""The signed-in user's own profile, avatar, account deletion and notification
settings (seed: Auth / Identity, Console Notification Settings)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from asyncpg import Record

from api.auth import actor, require, unauthenticated
from api.body import read_json
from api.errors import ApiError
from api.models.auth import OkResponse, UserResponse
from api.models.profile import (
    DeleteAccountRequest,
    NotificationSettings,
    NotificationSettingsOut,
    NotificationSettingsResponse,
    NotificationSettingsUpdate,
    ProfileUpdateRequest,
)
from api.openapi import RouteTable
from api.ratelimits import enforce
from api.responses import json_model, user_response
from api.sessions import clear_session_cookie
from api.state import services
from kubebyon.db import audit
from kubebyon.db import clusters as clusters_db
from kubebyon.db.database import Conn
from kubebyon.domain.images import MAX_AVATAR_BYTES, AvatarProblem, AvatarTooLarge, clean_avatar
from kubebyon.domain.passwords import verify_password

routes = RouteTable("profile")

AVATAR_FIELDS = ("avatar", "file")
# Boundaries and part headers around the image; beyond this the upload is too large.
MULTIPART_OVERHEAD = 16 * 1024
MAX_PARTS = 8  # parts read before giving up on finding the image


async def _record_own_change(
    conn: Conn, request: web.Request, action: str, message: str, extra: dict[str, Any] | None = None
) -> None:
    """Audit a change the caller made to their own account (in its transaction)."""
    principal = require(request)
    await audit.record(
        conn,
        actor(request),
        resource_type="user",
        action=action,
        resource_id=principal.user_id,
        message=message,
        extra=extra,
    )


@routes.route(
    "PUT",
    "/api/console/me",
    summary="Update the caller's profile (display_name, timezone, locale)",
    request=ProfileUpdateRequest,
    response=UserResponse,
    statuses=(400, 401),
)
async def update_profile(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    body = await read_json(request, ProfileUpdateRequest)
    changed = sorted(name for name in body.model_fields_set if getattr(body, name) is not None)
    async with svc.db.transaction() as conn:
        row = await conn.fetchrow(
            svc.db.q.update_profile,
            principal.user_id,
            body.display_name,
            body.timezone,
            body.locale,
        )
        if row is None:
            raise unauthenticated()
        await _record_own_change(
            conn,
            request,
            "update_profile",
            f"{principal.email} updated their profile ({', '.join(changed)})",
            extra={"fields": changed},
        )
    return user_response(row)


async def _read_avatar_upload(request: web.Request) -> bytes:
    """The image bytes of the ``avatar`` (or ``file``) field, read from the stream with
    a limit: the app-wide body cap does not apply to a multipart reader, and an upload
    just over the limit must be told the avatar rule, not a bare 413."""
    if request.content_type != "multipart/form-data":
        raise ApiError(
            400, "upload the image as multipart/form-data in the field 'avatar'", "invalid_request"
        )
    budget = MAX_AVATAR_BYTES + MULTIPART_OVERHEAD
    if request.content_length is not None and request.content_length > budget:
        raise AvatarTooLarge
    try:
        reader = await request.multipart()
        for _ in range(MAX_PARTS):
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "nested multipart bodies are not supported", "invalid_request")
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                budget -= len(chunk)
                if len(data) > MAX_AVATAR_BYTES or budget < 0:
                    raise AvatarTooLarge
            if part.name in AVATAR_FIELDS:
                return bytes(data)
    except AvatarProblem:
        raise
    except (ValueError, HttpProcessingError):
        raise ApiError(400, "malformed multipart/form-data body", "invalid_request") from None
    raise ApiError(400, "avatar: field required (multipart field 'avatar')", "validation_error")


@routes.route(
    "POST",
    "/api/console/me/avatar",
    summary="Upload an avatar (multipart field 'avatar'; PNG, JPEG or WebP, ≤ 1 MiB, ≤ 1024×1024)",
    response=UserResponse,
    statuses=(400, 401),
    multipart_field="avatar",
)
async def upload_avatar(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    try:
        image, content_type = await asyncio.to_thread(
            clean_avatar, await _read_avatar_upload(request)
        )
    except AvatarProblem as exc:
        raise ApiError(400, str(exc), exc.code) from None
    async with svc.db.transaction() as conn:
        row = await conn.fetchrow(svc.db.q.set_avatar, principal.user_id, image, content_type)
        if row is None:
            raise unauthenticated()
        await _record_own_change(
            conn, request, "update_avatar", f"{principal.email} changed their avatar"
        )
    return user_response(row)


@routes.route(
    "GET",
    "/api/console/me/avatar",
    summary="The caller's avatar image",
    response_content_type="image/*",
    statuses=(401, 404),
)
async def get_avatar(request: web.Request) -> web.Response:
    principal = require(request)
    db = services(request).db
    row = await db.fetchrow(db.q.get_avatar, principal.user_id)
    if row is None:
        raise ApiError(404, "no avatar uploaded", "not_found")
    return web.Response(
        body=row["avatar"],
        content_type=row["avatar_content_type"],
        headers={"Cache-Control": "private"},
    )


@routes.route(
    "DELETE",
    "/api/console/me",
    summary="Delete the caller's account (requires the current password)",
    request=DeleteAccountRequest,
    response=OkResponse,
    statuses=(400, 401, 409, 429),
)
async def delete_current_user(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    db = svc.db
    enforce(request, svc.auth_limiter, "delete_account")  # the password can be guessed here
    body = await read_json(request, DeleteAccountRequest)
    user = await db.fetchrow(db.q.get_user, principal.user_id)
    if user is None:
        raise unauthenticated()
    if user["password_hash"] is None:
        raise ApiError(
            409,
            "this account has no password: set one through password reset, then delete it",
            "password_not_set",
        )
    if not verify_password(user["password_hash"], body.password):
        raise ApiError(401, "the password is not correct", "invalid_credentials")
    async with db.transaction() as conn:
        if await conn.fetchval(db.q.soft_delete_user, principal.user_id) is None:
            raise unauthenticated()
        await conn.execute(db.q.revoke_user_sessions, principal.user_id, None)
        await conn.execute(db.q.revoke_user_api_keys, principal.user_id)
        await clusters_db.delete_all_of_owner(conn, principal.user_id, actor=actor(request))
        await _record_own_change(
            conn, request, "delete_current_user", f"{principal.email} deleted their account"
        )
    response = json_model(OkResponse())
    clear_session_cookie(response, secure=(await svc.system_settings.get()).secure_cookies)
    return response


def _notification_settings(row: Record | None) -> NotificationSettingsOut:
    if row is None:
        return NotificationSettingsOut()
    return NotificationSettingsOut.model_validate(dict(row))


@routes.route(
    "GET",
    "/api/console/settings/notifications",
    summary="The caller's notification settings",
    response=NotificationSettingsResponse,
    statuses=(401,),
)
async def get_notification_settings(request: web.Request) -> web.Response:
    principal = require(request)
    db = services(request).db
    row = await db.fetchrow(db.q.get_notification_settings, principal.user_id)
    body = NotificationSettingsResponse(settings=_notification_settings(row))
    return json_model(body)


@routes.route(
    "PUT",
    "/api/console/settings/notifications",
    summary="Update the caller's notification settings",
    request=NotificationSettingsUpdate,
    response=NotificationSettingsResponse,
    statuses=(400, 401),
)
async def put_notification_settings(request: web.Request) -> web.Response:
    principal = require(request)
    db = services(request).db
    body = await read_json(request, NotificationSettingsUpdate)
    async with db.transaction() as conn:
        current = await conn.fetchrow(db.q.get_notification_settings, principal.user_id)
        merged = _notification_settings(current).model_dump(exclude={"updated_at"})
        merged.update(body.model_dump(include=body.model_fields_set - {"updated_at"}))
        wanted = NotificationSettings.model_validate(merged)
        problem = wanted.problem()
        if problem is not None:
            field, message = problem
            raise ApiError(
                400,
                f"{field}: {message}",
                "validation_error",
                details=[{"field": field, "message": message}],
            )
        row = await conn.fetchrow(
            db.q.put_notification_settings,
            principal.user_id,
            wanted.email_notifications,
            wanted.slack_notifications,
            wanted.slack_target,
            wanted.telegram_notifications,
            wanted.telegram_chat_id,
        )
        channels = {
            "email": wanted.email_notifications,
            "slack": wanted.slack_notifications,
            "telegram": wanted.telegram_notifications,
        }
        await audit.record(
            conn,
            actor(request),
            resource_type="notification_settings",
            action="update",
            resource_id=principal.user_id,
            message="notification settings updated: "
            + ", ".join(f"{name} {'on' if on else 'off'}" for name, on in channels.items()),
            extra={"channels": channels},
        )
    body_out = NotificationSettingsResponse(settings=_notification_settings(row))
    return json_model(body_out)
