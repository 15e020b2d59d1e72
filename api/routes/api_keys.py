"""The caller's API keys: listed by prefix, created with the plaintext shown once,
revoked by id. Authentication with a key lives in api/auth.py."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from api.auth import actor, require
from api.body import read_json
from api.errors import ApiError
from api.models.api_keys import (
    ApiKeyCreatedResponse,
    ApiKeyCreateRequest,
    ApiKeyListResponse,
    ApiKeyOut,
    CreatedApiKey,
)
from api.models.auth import OkResponse
from api.openapi import RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.db import audit
from kubebyon.domain.ids import new_id
from kubebyon.domain.tokens import api_key_display_prefix, new_api_key, token_hash

routes = RouteTable("api_keys")


@routes.route(
    "GET",
    "/api/console/api-keys",
    summary="The caller's active API keys (never the keys themselves)",
    response=ApiKeyListResponse,
    statuses=(401,),
)
async def list_api_keys(request: web.Request) -> web.Response:
    principal = require(request)
    db = services(request).db
    rows = await db.fetch(db.q.list_api_keys, principal.user_id)
    body = ApiKeyListResponse(api_keys=[ApiKeyOut.model_validate(dict(row)) for row in rows])
    return json_model(body)


@routes.route(
    "POST",
    "/api/console/api-keys",
    summary="Create an API key; the response holds the key, shown this once",
    request=ApiKeyCreateRequest,
    response=ApiKeyCreatedResponse,
    statuses=(400, 401),
    success_status=201,
)
async def create_api_key(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    body = await read_json(request, ApiKeyCreateRequest)
    now = svc.now()
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        expires_at = now + timedelta(days=body.expires_in_days)
    if expires_at is not None and expires_at <= now:
        raise ApiError(400, "expires_at: must be in the future", "validation_error")
    key = new_api_key()
    prefix = api_key_display_prefix(key)
    async with svc.db.transaction() as conn:
        row = await conn.fetchrow(
            svc.db.q.insert_api_key,
            new_id("key"),
            principal.user_id,
            body.name,
            prefix,
            token_hash(key),
            expires_at,
        )
        assert row is not None
        await audit.record(
            conn,
            actor(request),
            resource_type="api_key",
            action="create",
            resource_id=row["id"],
            message=f"created API key {body.name!r} ({prefix}…)",
            extra={"name": body.name, "prefix": prefix},
        )
    created = CreatedApiKey.model_validate({**dict(row), "key": key})
    return json_model(ApiKeyCreatedResponse(api_key=created), status=201)


@routes.route(
    "DELETE",
    "/api/console/api-keys/{keyID}",
    summary="Revoke one of the caller's API keys",
    response=OkResponse,
    statuses=(401, 404),
)
async def delete_api_key(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    async with svc.db.transaction() as conn:
        row = await conn.fetchrow(
            svc.db.q.revoke_api_key, request.match_info["keyID"], principal.user_id
        )
        if row is None:
            raise ApiError(404, "API key not found", "not_found")
        await audit.record(
            conn,
            actor(request),
            resource_type="api_key",
            action="delete",
            resource_id=row["id"],
            message=f"revoked API key {row['name']!r} ({row['prefix']}…)",
            extra={"name": row["name"], "prefix": row["prefix"]},
        )
    return json_model(OkResponse())
