"""Console clusters (seed: Clusters, §2.1, §2.6, §2.7, §3.1, §3.2, §3.4, §3.5).

The API writes desired state only: create, update and delete change the cluster row and
its generation, record an operation and its job, wake the vcluster reconciler and write
the ``*_requested`` audit event in one transaction (``kubebyon/db/clusters.py``); the
host converges asynchronously.

- Visibility: a user sees the clusters they own and those an authorization role lets them
  ``get`` (resource ``clusters``); platform admins see every cluster. Anything else is
  404, never 403, and so is a deleted cluster (history stays in audit and operations).
- DELETE answers 202 with the cluster in status ``deleting``; the vcluster side sets
  ``deleted`` and ``deleted_at`` once the host resources are gone.
- A PUT that changes nothing answers 200 and records nothing.
- The kubeconfig is the vCluster's admin credential: besides the password re-check, it
  needs full rights on the cluster (owner, admin, or a role with every verb on ``*``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from asyncpg import Record

from api.auth import actor, require, unauthenticated
from api.authz import READ, authorize, visible
from api.body import read_json
from api.errors import ApiError
from api.models.clusters import (
    ClusterCreateRequest,
    ClusterListResponse,
    ClusterOut,
    ClusterResponse,
    ClusterUpdateRequest,
    JobListResponse,
    JobOut,
    KubeconfigRequest,
    KubeconfigResponse,
    MetricPoint,
    MetricsHistoryResponse,
    OperationOut,
    OperationsResponse,
)
from api.openapi import RouteTable
from api.ratelimits import enforce
from api.responses import json_model
from api.state import services
from kubebyon.db import audit
from kubebyon.db import clusters as clusters_db
from kubebyon.domain.authz import VERBS
from kubebyon.domain.clusters import (
    AUTHZ_RESOURCE,
    ClusterRules,
    Problem,
    create_problems,
    granted_cluster_ids,
    ingress_cname_target,
    normalized,
    update_problems,
    with_create_defaults,
)
from kubebyon.domain.passwords import verify_password
from kubebyon.domain.validation import bounded_limit
from kubebyon.settings import Settings

routes = RouteTable("clusters")

CLUSTERS = "/api/console/clusters"
CLUSTER = CLUSTERS + "/{clusterID}"
NOT_FOUND = "cluster not found"
HISTORY_LIMIT = 100  # operations and jobs shown on a cluster's page
JOB_LIMIT_DEFAULT, JOB_LIMIT_MAX = 100, 500
JOB_STATUSES = ("pending", "running", "succeeded", "failed")
# window -> (seconds, resolution_seconds of control_plane_samples; 0 = raw samples)
METRIC_WINDOWS = {"1h": (3600, 0), "6h": (21600, 0), "24h": (86400, 300), "7d": (604800, 3600)}


def cluster_rules(settings: Settings) -> ClusterRules:
    return ClusterRules(
        tuple(settings.supported_kubernetes_versions), settings.cluster_resource_bounds
    )


def _invalid(problems: list[Problem]) -> ApiError:
    first = problems[0]
    details = [{"field": p.field, "message": p.message} for p in problems]
    return ApiError(400, f"{first.field}: {first.message}", "validation_error", details=details)


async def _cluster_models(request: web.Request, rows: list[Record]) -> list[ClusterOut]:
    base_domain = (
        await services(request).system_settings.get()
    ).managed_workload_ingress_base_domain
    return [
        ClusterOut.model_validate(
            {
                **dict(row),
                "managed_workload_ingress_cname_target": ingress_cname_target(
                    row["id"], row["vcluster_name"], base_domain
                ),
            }
        )
        for row in rows
    ]


async def _cluster_response(
    request: web.Request, row: Record, *, status: int = 200
) -> web.Response:
    (cluster,) = await _cluster_models(request, [row])
    return json_model(ClusterResponse(cluster=cluster), status=status)


async def load_cluster(request: web.Request, verb: str = READ) -> Record:
    """The cluster of the path's ``{clusterID}`` if the caller may ``verb`` it (404 when
    it may not see it or it is deleted, 403 when it may see it but not ``verb`` it)."""
    db = services(request).db
    row = await db.fetchrow(db.q.get_live_cluster, request.match_info["clusterID"])
    if row is None:
        raise ApiError(404, NOT_FOUND, "not_found")
    await authorize(
        request,
        cluster=row["id"],
        resource=AUTHZ_RESOURCE,
        verb=verb,
        owner_id=row["owner_user_id"],
        not_found=NOT_FOUND,
    )
    return row


def _changeable(cluster: Record) -> None:
    if cluster["status"] == "deleting":
        raise ApiError(409, "the cluster is being deleted", "cluster_deleting")
    if cluster["backend"] != "vcluster":
        raise ApiError(
            409, "an imported cluster is managed through the bk-bcs API", "cluster_imported"
        )


@routes.route(
    "GET",
    CLUSTERS,
    summary="Clusters the caller may see, newest first (admins: every cluster)",
    response=ClusterListResponse,
    statuses=(401,),
)
async def list_clusters(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    db = svc.db
    if principal.is_admin:
        rows = await db.fetch(db.q.list_live_clusters)
    else:
        roles = await svc.authorizer.roles(principal.subjects, principal.user_id)
        granted = granted_cluster_ids(roles)
        if granted is None:
            rows = await db.fetch(db.q.list_live_clusters)
        else:
            rows = await db.fetch(db.q.list_live_clusters_of, principal.user_id, sorted(granted))
        if roles:
            rows = await visible(
                request,
                rows,
                resource=AUTHZ_RESOURCE,
                cluster_of=lambda row: row["id"],
                owner_of=lambda row: row["owner_user_id"],
            )
    return json_model(ClusterListResponse(clusters=await _cluster_models(request, rows)))


@routes.route(
    "POST",
    CLUSTERS,
    summary="Create a cluster (status provisioning; the vCluster is created asynchronously)",
    request=ClusterCreateRequest,
    response=ClusterResponse,
    statuses=(400, 401, 409),
    success_status=201,
)
async def create_cluster(request: web.Request) -> web.Response:
    principal = require(request)
    svc = services(request)
    body = await read_json(request, ClusterCreateRequest)
    spec = with_create_defaults(body.model_dump())
    if problems := create_problems(spec, cluster_rules(svc.settings)):
        raise _invalid(problems)
    async with svc.db.transaction() as conn:
        try:
            row = await clusters_db.create(
                conn, spec, owner_user_id=principal.user_id, actor=actor(request)
            )
        except clusters_db.VclusterNameTaken:
            raise ApiError(
                409,
                f"vcluster_name: {spec['vcluster_name']!r} is already used by another cluster",
                "vcluster_name_taken",
            ) from None
    return await _cluster_response(request, row, status=201)


@routes.route(
    "GET",
    CLUSTER,
    summary="One cluster",
    response=ClusterResponse,
    statuses=(401, 404),
)
async def get_cluster(request: web.Request) -> web.Response:
    return await _cluster_response(request, await load_cluster(request))


@routes.route(
    "PUT",
    CLUSTER,
    summary="Update resources, public access, control-plane host or managed ingress "
    "(saved at once, converged asynchronously)",
    request=ClusterUpdateRequest,
    response=ClusterResponse,
    statuses=(400, 401, 403, 404, 409),
)
async def update_cluster(request: web.Request) -> web.Response:
    current = await load_cluster(request, "update")
    svc = services(request)
    body = await read_json(request, ClusterUpdateRequest)
    changes = normalized({name: getattr(body, name) for name in body.model_fields_set})
    if problems := update_problems(changes, cluster_rules(svc.settings)):
        raise _invalid(problems)
    async with svc.db.transaction() as conn:
        locked = await conn.fetchrow(svc.db.q.lock_live_cluster, current["id"])
        if locked is None:
            raise ApiError(404, NOT_FOUND, "not_found")
        _changeable(locked)
        effective = {name: value for name, value in changes.items() if locked[name] != value}
        row = locked
        if effective:
            row = await clusters_db.update(conn, locked, effective, actor=actor(request))
    return await _cluster_response(request, row)


@routes.route(
    "DELETE",
    CLUSTER,
    summary="Delete a cluster: 202, status deleting; deleted once the host resources are gone",
    response=ClusterResponse,
    statuses=(401, 403, 404, 409),
    success_status=202,
)
async def delete_cluster(request: web.Request) -> web.Response:
    current = await load_cluster(request, "delete")
    db = services(request).db
    async with db.transaction() as conn:
        locked = await conn.fetchrow(db.q.lock_live_cluster, current["id"])
        if locked is None:
            raise ApiError(404, NOT_FOUND, "not_found")
        _changeable(locked)
        row = await clusters_db.request_deletion(conn, locked, actor=actor(request))
    return await _cluster_response(request, row, status=202)


@routes.route(
    "GET",
    CLUSTER + "/operations",
    summary="The cluster's lifecycle operations and their jobs, newest first",
    response=OperationsResponse,
    statuses=(401, 404),
)
async def cluster_operations(request: web.Request) -> web.Response:
    cluster = await load_cluster(request)
    db = services(request).db
    operations = await db.fetch(db.q.list_cluster_operations, cluster["id"], HISTORY_LIMIT)
    jobs = await db.fetch(db.q.list_cluster_jobs, None, cluster["id"], HISTORY_LIMIT)
    body = OperationsResponse(
        operations=[OperationOut.model_validate(dict(row)) for row in operations],
        jobs=[JobOut.model_validate(dict(row)) for row in jobs],
    )
    return json_model(body)


@routes.route(
    "GET",
    "/api/console/admin/cluster-jobs",
    summary="Cluster jobs across all clusters, newest first",
    response=JobListResponse,
    auth="admin",
    statuses=(400, 401, 403),
    query=(
        ("status", "pending | running | succeeded | failed"),
        ("cluster_id", "only this cluster's jobs"),
        ("limit", "default 100, at most 500; invalid values mean 100"),
    ),
)
async def admin_cluster_jobs(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(400, f"status: must be one of {', '.join(JOB_STATUSES)}", "validation_error")
    db = services(request).db
    rows = await db.fetch(
        db.q.list_cluster_jobs,
        status,
        request.query.get("cluster_id") or None,
        bounded_limit(request.query.get("limit"), default=JOB_LIMIT_DEFAULT, maximum=JOB_LIMIT_MAX),
    )
    return json_model(JobListResponse(jobs=[JobOut.model_validate(dict(row)) for row in rows]))


async def _require_full_rights(request: web.Request, cluster: Record) -> None:
    try:
        for verb in VERBS:
            await authorize(
                request,
                cluster=cluster["id"],
                resource="*",
                verb=verb,
                owner_id=cluster["owner_user_id"],
                not_found=NOT_FOUND,
            )
    except ApiError:  # the caller may see the cluster (load_cluster): say why not
        raise ApiError(
            403, "reading the kubeconfig needs full rights on the cluster", "forbidden"
        ) from None


@routes.route(
    "POST",
    CLUSTER + "/kubeconfig",
    summary="The cluster's kubeconfig, after re-checking the caller's password "
    "(?download=1: as a YAML attachment)",
    request=KubeconfigRequest,
    response=KubeconfigResponse,
    statuses=(400, 401, 403, 404, 405, 409, 429),
    query=(("download", "1: answer with the kubeconfig as an application/yaml attachment"),),
)
async def read_kubeconfig(request: web.Request) -> web.StreamResponse:
    principal = require(request)
    svc = services(request)
    db = svc.db
    enforce(request, svc.auth_limiter, "kubeconfig")  # the password can be guessed here
    cluster = await load_cluster(request)
    await _require_full_rights(request, cluster)
    body = await read_json(request, KubeconfigRequest)
    user = await db.fetchrow(db.q.get_user, principal.user_id)
    if user is None:
        raise unauthenticated()
    if user["password_hash"] is None:
        raise ApiError(
            409,
            "this account has no password: set one through password reset first",
            "password_not_set",
        )
    event: dict[str, Any] = {
        "resource_type": "cluster",
        "action": "kubeconfig_read",
        "resource_id": cluster["id"],
        "cluster_id": cluster["id"],
        "cluster_name": cluster["name"],
    }
    if not verify_password(user["password_hash"], body.password):
        async with db.transaction() as conn:
            await audit.record(
                conn,
                actor(request),
                result="failure",
                message=f"Kubeconfig of cluster {cluster['name']} refused: wrong password",
                **event,
            )
        raise ApiError(401, "the password is not correct", "invalid_credentials")
    if cluster["status"] == "deleting":
        raise ApiError(409, "the cluster is being deleted", "cluster_deleting")
    if not cluster["kubeconfig_available"] or cluster["kubeconfig_encrypted"] is None:
        raise ApiError(
            409, "the kubeconfig is not available yet; try again later", "kubeconfig_pending"
        )
    kubeconfig = svc.secrets.decrypt(cluster["kubeconfig_encrypted"])
    download = request.query.get("download") in ("1", "true")
    async with db.transaction() as conn:
        await audit.record(
            conn,
            actor(request),
            message=f"Kubeconfig of cluster {cluster['name']} read",
            extra={"download": download},
            **event,
        )
    headers = {"Cache-Control": "no-store"}
    if download:
        filename = f"{cluster['vcluster_name']}-kubeconfig.yaml"
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return web.Response(text=kubeconfig, content_type="application/yaml", headers=headers)
    body_out = KubeconfigResponse(
        api_endpoint=cluster["api_endpoint"],
        kubeconfig=kubeconfig,
        version=cluster["observed_kubernetes_version"] or cluster["kubernetes_version"],
    )
    response = json_model(body_out)
    response.headers.update(headers)
    return response


@routes.route(
    "GET",
    CLUSTER + "/control-plane-metrics/history",
    summary="Control-plane CPU, memory, API latency and availability over a window",
    response=MetricsHistoryResponse,
    statuses=(400, 401, 404),
    query=(("window", "1h (default, raw samples) | 6h (raw) | 24h (5 min) | 7d (1 h)"),),
)
async def control_plane_history(request: web.Request) -> web.Response:
    cluster = await load_cluster(request)
    window = request.query.get("window") or "1h"
    if window not in METRIC_WINDOWS:
        raise ApiError(
            400, f"window: must be one of {', '.join(METRIC_WINDOWS)}", "validation_error"
        )
    db = services(request).db
    seconds, resolution = METRIC_WINDOWS[window]
    if resolution == 0:
        rows = await db.fetch(db.q.control_plane_history_raw, cluster["id"], seconds)
    else:
        rows = await db.fetch(db.q.control_plane_history_binned, cluster["id"], seconds, resolution)
    points = [MetricPoint.model_validate(dict(row)) for row in rows]
    return json_model(MetricsHistoryResponse.model_validate({"window": window, "points": points}))
