"""Console node actions (seed "Nodes"): cordon, uncordon, drain and delete.

Each action is a job on the node's cluster (reconcilers/node_jobs.py): the route checks
access, writes the operation (type ``node_<action>``, listed in the cluster's operations)
and its job in one transaction and answers 202; the host Node is changed by the job, and
the audit event (``node/cordoned`` …) is written when it is done.

- Access: ``update`` on resource ``nodes`` of the node's cluster (``delete`` to delete);
  a node the caller may not see, or a deleted one, is 404.
- One action at a time per node: another while one is pending or running is 409, except
  a forced delete (the way out of a drain stuck on an unreachable machine).
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from api.auth import actor, require
from api.authz import authorize
from api.errors import ApiError
from api.models.clusters import JobOut, OperationOut
from api.models.node_actions import NodeAction, NodeActionResponse
from api.openapi import RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.db.desired_state import enqueue_operation

routes = RouteTable("node_actions")

NODE = "/api/console/nodes/{nodeID}"
NOT_FOUND = "node not found"
AUTHZ_RESOURCE = "nodes"
STATUSES = (401, 403, 404, 409)
UNINSTALL_NOTE = (
    "The node is removed from the cluster, but the machine itself still runs the k3s agent "
    "until it is uninstalled: run sudo /usr/local/bin/k3s-agent-uninstall.sh on it (until "
    "then, a restart of the agent may register the node again)."
)


async def _act(
    request: web.Request, action: NodeAction, verb: str, *, force: bool = False
) -> web.Response:
    svc = services(request)
    db = svc.db
    node = await db.fetchrow(db.q.node_action_target, request.match_info["nodeID"])
    if node is None:
        raise ApiError(404, NOT_FOUND, "not_found")
    await authorize(
        request,
        cluster=node["cluster_id"],
        resource=AUTHZ_RESOURCE,
        verb=verb,
        owner_id=node["owner_user_id"],
        not_found=NOT_FOUND,
    )
    if node["cluster_status"] == "deleting":
        raise ApiError(409, "the node's cluster is being deleted", "cluster_deleting")
    async with db.transaction() as conn:
        if await conn.fetchrow(db.q.node_action_lock, node["id"]) is None:
            raise ApiError(404, NOT_FOUND, "not_found")
        busy = await conn.fetchval(db.q.node_action_in_progress, node["cluster_id"], node["id"])
        if busy is not None and not force:
            raise ApiError(
                409,
                f"the node's earlier {busy.removeprefix('node_')} has not finished yet",
                "node_busy",
            )
        operation, job = await enqueue_operation(
            conn,
            cluster_id=node["cluster_id"],
            operation_type=f"node_{action}",
            requested_by_user_id=require(request).user_id,
            payload={"node_id": node["id"], "force": force, "actor": asdict(actor(request))},
        )
    body = NodeActionResponse(
        node_id=node["id"],
        node_name=node["name"],
        cluster_id=node["cluster_id"],
        action=action,
        operation=OperationOut.model_validate(dict(operation)),
        job=JobOut.model_validate(dict(job)),
        note=UNINSTALL_NOTE if action == "delete" else None,
    )
    return json_model(body, status=202)


@routes.route(
    "POST",
    NODE + "/cordon",
    summary="Cordon a node: no new pods are scheduled on it (a job; 202)",
    response=NodeActionResponse,
    statuses=STATUSES,
    success_status=202,
)
async def cordon_node(request: web.Request) -> web.Response:
    return await _act(request, "cordon", "update")


@routes.route(
    "POST",
    NODE + "/uncordon",
    summary="Uncordon a node: pods may be scheduled on it again (a job; 202)",
    response=NodeActionResponse,
    statuses=STATUSES,
    success_status=202,
)
async def uncordon_node(request: web.Request) -> web.Response:
    return await _act(request, "uncordon", "update")


@routes.route(
    "POST",
    NODE + "/drain",
    summary="Drain a node: cordon it, then evict its pods honouring PodDisruptionBudgets "
    "(DaemonSet and mirror pods stay); progress in the operation's stage (a job; 202)",
    response=NodeActionResponse,
    statuses=STATUSES,
    success_status=202,
)
async def drain_node(request: web.Request) -> web.Response:
    return await _act(request, "drain", "update")


def _force(request: web.Request) -> bool:
    raw = request.query.get("force")
    if raw in (None, "", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise ApiError(400, "force: must be true or false", "validation_error")


@routes.route(
    "DELETE",
    NODE,
    summary="Delete a node: drain it (unless ?force=true), remove the host Node and mark the "
    "snapshot deleted (a job; 202). The machine keeps running the agent until uninstalled.",
    response=NodeActionResponse,
    statuses=(400, *STATUSES),
    success_status=202,
    query=(("force", "true: skip the drain (an unreachable machine)"),),
)
async def delete_node(request: web.Request) -> web.Response:
    return await _act(request, "delete", "delete", force=_force(request))
