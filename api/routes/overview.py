"""The console overview (seed "Console Overview", §2.6, §3.10): clusters by status, nodes
by status and active join tokens among what the caller may see (platform admins: all),
and the recent activity of the audit stream (the caller's own, as /api/console/activities;
every user's for platform admins). A fixed handful of queries, whatever the size.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from api.auth import require
from api.models.activities import ActivityOut
from api.models.overview import OverviewResponse, StatusCounts, TokenCounts
from api.openapi import RouteTable
from api.responses import json_model
from api.routes.activities import activities_out
from api.routes.nodes import readable_cluster_ids
from api.state import services
from kubebyon.domain import clusters, join_tokens, nodes

routes = RouteTable("overview")

RECENT_ACTIVITIES = 10


def _counts(statuses: Iterable[str], found: dict[str, int]) -> StatusCounts:
    by_status = {status: found.get(status, 0) for status in statuses if status != "deleted"}
    return StatusCounts(total=sum(by_status.values()), by_status=by_status)


@routes.route(
    "GET",
    "/api/console/overview",
    summary="Counts of clusters, nodes and active join tokens the caller may see, and "
    "recent activity",
    response=OverviewResponse,
    statuses=(401,),
)
async def overview(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    db = svc.db
    readable = await readable_cluster_ids(
        request, clusters.AUTHZ_RESOURCE, nodes.AUTHZ_RESOURCE, join_tokens.AUTHZ_RESOURCE
    )
    found: dict[str, dict[str, int]] = {"cluster": {}, "node": {}, "token": {}}
    for row in await db.fetch(db.q.overview_counts, *readable):
        found[row["kind"]][row["status"]] = row["count"]
    if principal.is_admin:
        rows = await db.fetch(db.q.list_all_activities, None, None, None, RECENT_ACTIVITIES)
    else:
        rows = await db.fetch(
            db.q.list_own_activities, principal.user_id, None, None, None, RECENT_ACTIVITIES
        )
    body = OverviewResponse(
        clusters=_counts(clusters.STATUSES, found["cluster"]),
        nodes=_counts(nodes.STATUSES, found["node"]),
        tokens=TokenCounts(active=found["token"].get("active", 0)),
        activities=activities_out(ActivityOut, rows, svc.now()),
    )
    return json_model(body)
