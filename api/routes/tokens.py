"""Join tokens (seed §2.3, §3.6, §3.8): created for a ready cluster, revoked by id.

- Creating needs ``create`` on ``tokens`` of the cluster (owners and admins always); a
  caller who may see the cluster but not that gets 403. The value and the join command
  are in the creation response only; the database keeps the value's SHA-256 (the secret
  half is derived again by the reconciler, kubebyon/domain/join_tokens.py).
- The API writes the row and wakes the ``join_tokens`` reconciler in one transaction;
  the reconciler creates the host's ``bootstrap-token-<id>`` Secret, removes it when the
  token is revoked, used or expired, and marks tokens expired.
- ``join_command`` points at the system setting ``join_base_url``, else
  ``public_base_url``, else the origin the request came in on.
- Revoking needs ``delete`` on ``tokens`` of the token's cluster; a token the caller may
  not read is 404. A repeat, or a token no longer active, answers its current state and
  records nothing.
"""

from __future__ import annotations

from aiohttp import web
from asyncpg import Record

from api.auth import actor, require
from api.authz import authorize
from api.body import read_json
from api.errors import ApiError
from api.models.tokens import (
    CreatedJoinToken,
    JoinTokenCreatedResponse,
    JoinTokenCreateRequest,
    JoinTokenOut,
    JoinTokenResponse,
)
from api.openapi import RouteTable
from api.responses import json_model
from api.routes.clusters import CLUSTER, load_cluster
from api.state import services
from kubebyon.db import audit
from kubebyon.db.database import Conn
from kubebyon.db.desired_state import wake
from kubebyon.domain.ids import new_id
from kubebyon.domain.join_tokens import (
    AUTHZ_RESOURCE,
    DERIVATION_PURPOSE,
    TTL_DEFAULT_SECONDS,
    derive_bootstrap_token,
    new_bootstrap_id,
    ttl_problem,
)
from kubebyon.domain.system_settings import normalize_base_url
from kubebyon.domain.tokens import token_hash

routes = RouteTable("tokens")

RECONCILER = "join_tokens"
TOKEN_NOT_FOUND = "join token not found"  # noqa: S105 - a message
ISSUE_ATTEMPTS = 5  # draws of a bootstrap id that is not taken yet


async def _join_base_url(request: web.Request) -> str:
    settings = await services(request).system_settings.get()
    base = settings.join_base_url or settings.public_base_url
    return normalize_base_url(base) if base else f"{request.scheme}://{request.host}"


async def _issue(
    request: web.Request, conn: Conn, cluster: Record, ttl_seconds: int
) -> tuple[Record, str]:
    """The new token's row and its value."""
    svc = services(request)
    key = svc.secrets.derive_key(DERIVATION_PURPOSE)
    for _ in range(ISSUE_ATTEMPTS):
        token_id = new_id("tok")
        token = derive_bootstrap_token(key, token_id, new_bootstrap_id())
        row = await conn.fetchrow(
            svc.db.q.insert_join_token,
            token_id,
            cluster["id"],
            token_hash(token.value),
            token.display_prefix,
            token.id,
            token.secret_name,
            require(request).user_id,
            float(ttl_seconds),
        )
        if row is not None:
            return row, token.value
    raise RuntimeError("no free bootstrap token id after several draws")


@routes.route(
    "POST",
    CLUSTER + "/join-token",
    summary="Create a join token for a ready cluster; the value and the join command are "
    "shown in this response only",
    request=JoinTokenCreateRequest,
    response=JoinTokenCreatedResponse,
    statuses=(400, 401, 403, 404, 409, 503),
    success_status=201,
)
async def create_join_token(request: web.Request) -> web.Response:
    svc = services(request)
    cluster = await load_cluster(request)
    try:
        await authorize(
            request,
            cluster=cluster["id"],
            resource=AUTHZ_RESOURCE,
            verb="create",
            owner_id=cluster["owner_user_id"],
        )
    except ApiError:  # the caller may see the cluster (load_cluster): say why not
        raise ApiError(403, "not allowed to create join tokens for this cluster") from None
    body = (
        await read_json(request, JoinTokenCreateRequest)
        if request.body_exists
        else JoinTokenCreateRequest()
    )
    ttl = TTL_DEFAULT_SECONDS if body.ttl_seconds is None else body.ttl_seconds
    if problem := ttl_problem(ttl):
        raise ApiError(400, f"ttl_seconds: {problem}", "validation_error")
    if cluster["backend"] != "vcluster":
        raise ApiError(409, "an imported cluster has no KubeBYON nodes to join", "cluster_imported")
    if cluster["status"] != "ready":
        raise ApiError(
            409,
            f"the cluster is {cluster['status']}: join tokens can be created once it is ready",
            "cluster_not_ready",
        )
    if svc.settings.host_api_url is None:
        raise ApiError(
            503,
            "joining nodes is not configured on this server (KUBEBYON_HOST_API_URL is unset)",
            "join_not_configured",
        )
    base_url = await _join_base_url(request)
    async with svc.db.transaction() as conn:
        row, value = await _issue(request, conn, cluster, ttl)
        await wake(conn, RECONCILER, row["id"])
        await audit.record(
            conn,
            actor(request),
            resource_type="token",
            action="create",
            resource_id=row["id"],
            cluster_id=cluster["id"],
            cluster_name=cluster["name"],
            message=f"created join token {row['display_prefix']}… for cluster "
            f"{cluster['name']}, valid for {ttl} seconds",
            extra={"display_prefix": row["display_prefix"], "ttl_seconds": ttl},
        )
    created = CreatedJoinToken.model_validate(
        {
            **dict(row),
            "value": value,
            "join_command": f'curl -sfL "{base_url}/join?token={value}" | sh -',
        }
    )
    response = json_model(JoinTokenCreatedResponse(token=created), status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.route(
    "DELETE",
    "/api/console/tokens/{tokenID}",
    summary="Revoke a join token (idempotent: a repeat answers the token as it stands)",
    response=JoinTokenResponse,
    statuses=(401, 403, 404),
)
async def revoke_join_token(request: web.Request) -> web.Response:
    principal = require(request)
    db = services(request).db
    token_id = request.match_info["tokenID"]
    token = await db.fetchrow(db.q.get_join_token, token_id)
    if token is None:
        raise ApiError(404, TOKEN_NOT_FOUND, "not_found")
    await authorize(
        request,
        cluster=token["cluster_id"],
        resource=AUTHZ_RESOURCE,
        verb="delete",
        owner_id=token["owner_user_id"],
        not_found=TOKEN_NOT_FOUND,
    )
    async with db.transaction() as conn:
        if await conn.fetchval(db.q.revoke_join_token, token_id, principal.user_id):
            await wake(conn, RECONCILER, token_id)
            await audit.record(
                conn,
                actor(request),
                resource_type="token",
                action="revoke",
                resource_id=token_id,
                cluster_id=token["cluster_id"],
                cluster_name=token["cluster_name"],
                message=f"revoked join token {token['display_prefix']}… of cluster "
                f"{token['cluster_name']}",
                extra={"display_prefix": token["display_prefix"]},
            )
        current = await conn.fetchrow(db.q.get_join_token, token_id)
    if current is None:  # its cluster was deleted meanwhile
        raise ApiError(404, TOKEN_NOT_FOUND, "not_found")
    return json_model(JoinTokenResponse(token=JoinTokenOut.model_validate(dict(current))))
