"""The console kubectl proxy (seed §3.7): read-only kubectl against a ready cluster.

Arguments are checked against an allow-list (``kubebyon/domain/kubectl.py``) before
anything runs; the real kubectl runs behind ``Services.kubectl``
(``kubebyon/adapters/kubectl.py``) with the cluster's own kubeconfig. Who may run it: whoever
may read the cluster (``get``). Every run is audited as ``cluster/kubectl_exec`` with its
arguments and exit code, never its output; refused arguments and timeouts are audited as
failures.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from asyncpg import Record

from api.auth import actor
from api.body import read_json
from api.errors import ApiError
from api.models.kubectl import MAX_ARGS, KubectlRequest, KubectlResponse
from api.openapi import RouteTable
from api.responses import json_model
from api.routes.clusters import CLUSTER, load_cluster
from api.state import services
from kubebyon.db import audit
from kubebyon.domain.kubectl import (
    KubectlTimedOut,
    KubectlUnavailable,
    check_kubectl_args,
    split_command,
)

routes = RouteTable("kubectl")

MAX_MESSAGE_COMMAND = 200  # characters of the command line shown in the audit message


def _argv(body: KubectlRequest) -> list[str]:
    if body.args is not None:
        return body.args
    assert body.command is not None
    try:
        argv = split_command(body.command)
    except ValueError as exc:
        raise ApiError(400, f"command: {exc}", "validation_error") from None
    if len(argv) > MAX_ARGS:
        raise ApiError(400, f"command: at most {MAX_ARGS} arguments", "validation_error")
    return argv


async def _audit(
    request: web.Request,
    cluster: Record,
    argv: Sequence[str],
    *,
    result: str,
    outcome: str,
    extra: dict[str, Any],
) -> None:
    command = shlex.join(argv)
    if len(command) > MAX_MESSAGE_COMMAND:
        command = command[:MAX_MESSAGE_COMMAND] + "…"
    async with services(request).db.transaction() as conn:
        await audit.record(
            conn,
            actor(request),
            resource_type="cluster",
            action="kubectl_exec",
            resource_id=cluster["id"],
            cluster_id=cluster["id"],
            cluster_name=cluster["name"],
            result=result,
            message=f"kubectl {command} on cluster {cluster['name']}: {outcome}",
            extra={"args": list(argv), **extra},
        )


@routes.route(
    "POST",
    CLUSTER + "/kubectl",
    summary="Run a read-only kubectl command against the cluster (get, describe, logs, top, "
    "api-resources, api-versions, version, explain, events, auth can-i)",
    request=KubectlRequest,
    response=KubectlResponse,
    statuses=(400, 401, 404, 409, 503, 504),
)
async def run_kubectl(request: web.Request) -> web.Response:
    cluster = await load_cluster(request)
    body = await read_json(request, KubectlRequest)
    argv = _argv(body)
    denial = check_kubectl_args(argv)
    if denial is not None:
        await _audit(
            request,
            cluster,
            argv,
            result="failure",
            outcome=f"refused ({denial.argument!r})",
            extra={"denied_argument": denial.argument},
        )
        raise ApiError(
            400,
            f"kubectl argument {denial.argument!r} is not allowed: {denial.reason}",
            "kubectl_denied",
        )
    if cluster["status"] != "ready":
        raise ApiError(
            409, f"the cluster is {cluster['status']}; kubectl needs a ready cluster", "not_ready"
        )
    if cluster["kubeconfig_encrypted"] is None:
        raise ApiError(
            409, "the kubeconfig is not available yet; try again later", "kubeconfig_pending"
        )
    svc = services(request)
    if svc.kubectl is None:
        raise ApiError(503, "kubectl is not available on this server", "kubectl_unavailable")
    kubeconfig = svc.secrets.decrypt(cluster["kubeconfig_encrypted"])
    try:
        result = await svc.kubectl.run(kubeconfig, argv)
    except KubectlUnavailable as exc:
        raise ApiError(503, str(exc), "kubectl_unavailable") from None
    except KubectlTimedOut as exc:
        await _audit(
            request, cluster, argv, result="failure", outcome="timed out", extra={"timed_out": True}
        )
        raise ApiError(504, str(exc), "kubectl_timeout") from None
    await _audit(
        request,
        cluster,
        argv,
        result="success",
        outcome=f"exit code {result.exit_code}",
        extra={"exit_code": result.exit_code, "truncated": result.truncated},
    )
    return json_model(
        KubectlResponse(
            stdout=result.stdout,
            stderr=result.stderr,
            exit_code=result.exit_code,
            truncated=result.truncated,
        )
    )
