"""The activity stream (seed §2.6, §3.10): the caller's own audit events, and every
user's for admins. Filters apply before the limit; an unknown category is empty."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from aiohttp import web
from asyncpg import Record

from api.auth import require
from api.models.activities import (
    ActivityListResponse,
    ActivityOut,
    AdminActivityListResponse,
    AdminActivityOut,
)
from api.openapi import RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.domain.audit import SECURITY_EVENTS, activity_type, relative_time
from kubebyon.domain.validation import bounded_limit

routes = RouteTable("activities")
A = TypeVar("A", bound=ActivityOut)

FILTERS = (
    ("limit", "How many events, newest first."),
    ("category", "security: the seed's security-relevant events; other values match nothing."),
    ("resource_type", "Only events on this resource type (session, api_key, cluster, ...)."),
    ("action", "Only events with this action (login, create, ...)."),
)
CATEGORY_EVENTS = {"security": sorted(f"{rtype}/{action}" for rtype, action in SECURITY_EVENTS)}


def _filters(request: web.Request) -> tuple[list[str] | None, str | None, str | None] | None:
    """(category events, resource_type, action); None when the category is unknown."""
    category = request.query.get("category") or None
    events = None
    if category is not None:
        if category not in CATEGORY_EVENTS:
            return None
        events = CATEGORY_EVENTS[category]
    return events, request.query.get("resource_type") or None, request.query.get("action") or None


def activities_out(model: type[A], rows: list[Record], now: datetime) -> list[A]:
    return [
        model.model_validate(
            {
                **dict(row),
                "type": activity_type(row["resource_type"], row["action"]),
                "relative_time": relative_time(row["occurred_at"], now),
            }
        )
        for row in rows
    ]


@routes.route(
    "GET",
    "/api/console/activities",
    summary="The caller's own recent activity (default 20, at most 100)",
    response=ActivityListResponse,
    statuses=(401,),
    query=FILTERS,
)
async def list_activities(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    filters = _filters(request)
    rows = []
    if filters is not None:
        rows = await svc.db.fetch(
            svc.db.q.list_own_activities,
            principal.user_id,
            *filters,
            bounded_limit(request.query.get("limit"), default=20, maximum=100),
        )
    body = ActivityListResponse(activities=activities_out(ActivityOut, rows, svc.now()))
    return json_model(body)


@routes.route(
    "GET",
    "/api/console/admin/activities",
    summary="Every user's recent activity, for security audits (default 100, at most 500)",
    response=AdminActivityListResponse,
    auth="admin",
    statuses=(401, 403),
    query=FILTERS,
)
async def list_admin_activities(request: web.Request) -> web.Response:
    svc = services(request)
    filters = _filters(request)
    rows = []
    if filters is not None:
        rows = await svc.db.fetch(
            svc.db.q.list_all_activities,
            *filters,
            bounded_limit(request.query.get("limit"), default=100, maximum=500),
        )
    body = AdminActivityListResponse(activities=activities_out(AdminActivityOut, rows, svc.now()))
    return json_model(body)
