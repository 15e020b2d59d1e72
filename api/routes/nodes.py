"""Console nodes (seed "Nodes", §2.4, §2.5, §3.9): the snapshot the node reconciler keeps
of every machine joined to a cluster, and the history of their health.

- Access: ``get`` on resource ``nodes`` of the node's cluster (owners and platform admins
  always). Lists hold only what the caller may read: a ``cluster_id`` or ``node_id`` filter
  naming something else gives an empty list, never a hint that it exists; one node the
  caller may not read is 404, like one that does not exist.
- Deleted nodes are not listed (their events stay); nothing of a deleted cluster is shown.
"""

from __future__ import annotations

from aiohttp import web

from api.auth import require
from api.authz import READ, authorize, visible
from api.errors import ApiError
from api.models.nodes import (
    NodeEventListResponse,
    NodeEventOut,
    NodeListResponse,
    NodeOut,
    NodeResponse,
)
from api.openapi import RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.domain.clusters import granted_cluster_ids
from kubebyon.domain.nodes import AUTHZ_RESOURCE, events_limit

routes = RouteTable("nodes")

NOT_FOUND = "node not found"


async def readable_cluster_ids(request: web.Request, *resources: str) -> list[list[str] | None]:
    """For each resource, the live clusters whose ``resource`` the caller may read; None
    (every cluster) for platform admins. One query, whatever the number of resources."""
    principal = require(request)
    if principal.is_admin:
        return [None for _ in resources]
    svc = services(request)
    roles = await svc.authorizer.roles(principal.subjects, principal.user_id)
    granted = granted_cluster_ids(roles)
    rows = await svc.db.fetch(
        svc.db.q.readable_cluster_candidates,
        principal.user_id,
        None if granted is None else sorted(granted),
    )
    readable: list[list[str] | None] = []
    for resource in resources:
        allowed = rows
        if roles:
            allowed = await visible(
                request,
                rows,
                resource=resource,
                cluster_of=lambda row: row["id"],
                owner_of=lambda row: row["owner_user_id"],
            )
        readable.append([row["id"] for row in allowed])
    return readable


@routes.route(
    "GET",
    "/api/console/nodes",
    summary="Nodes the caller may see (not deleted), by cluster and name",
    response=NodeListResponse,
    statuses=(401,),
    query=(("cluster_id", "Only the nodes of this cluster."),),
)
async def list_nodes(request: web.Request) -> web.Response:
    (clusters,) = await readable_cluster_ids(request, AUTHZ_RESOURCE)
    db = services(request).db
    rows = await db.fetch(db.q.list_live_nodes, clusters, request.query.get("cluster_id") or None)
    return json_model(NodeListResponse(nodes=[NodeOut.model_validate(dict(r)) for r in rows]))


@routes.route(
    "GET",
    "/api/console/nodes/{nodeID}",
    summary="One node",
    response=NodeResponse,
    statuses=(401, 404),
)
async def get_node(request: web.Request) -> web.Response:
    db = services(request).db
    row = await db.fetchrow(db.q.get_live_node, request.match_info["nodeID"])
    if row is None:
        raise ApiError(404, NOT_FOUND, "not_found")
    await authorize(
        request,
        cluster=row["cluster_id"],
        resource=AUTHZ_RESOURCE,
        verb=READ,
        owner_id=row["owner_user_id"],
        not_found=NOT_FOUND,
    )
    return json_model(NodeResponse(node=NodeOut.model_validate(dict(row))))


@routes.route(
    "GET",
    "/api/console/node-events",
    summary="Node events and health history, newest first (observed_at, id)",
    response=NodeEventListResponse,
    statuses=(401,),
    query=(
        ("cluster_id", "Only events of this cluster."),
        ("node_id", "Only events of this node."),
        ("type", "Only events of this type (joined, ready, not_ready, offline, ...)."),
        ("limit", "Default 100, at most 500 (larger values are capped); invalid: 100."),
    ),
)
async def list_node_events(request: web.Request) -> web.Response:
    (clusters,) = await readable_cluster_ids(request, AUTHZ_RESOURCE)
    db = services(request).db
    query = request.query
    rows = await db.fetch(
        db.q.list_node_events,
        clusters,
        query.get("cluster_id") or None,
        query.get("node_id") or None,
        query.get("type") or None,
        events_limit(query.get("limit")),
    )
    events = [NodeEventOut.model_validate(dict(r)) for r in rows]
    return json_model(NodeEventListResponse(events=events))
