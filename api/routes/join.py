"""The join script (seed "Join / Script"): ``curl -sfL "<base>/join?token=…" | sh -``.

Public (the token is the credential) and rate-limited per client IP with
``KUBEBYON_JOIN_RATE_LIMIT_*`` (the IP through the trusted-proxy rules). Every answer that
is not a script is one line of text, so ``curl -sf`` fails with a clear status instead of
piping an error page into ``sh``. A token that is unknown, expired, revoked or used, one
whose cluster is being deleted, and (legacy path) one that belongs to another cluster all
get the same 404: nothing tells whether a cluster or a token exists. The token is looked
up by its SHA-256 and never logged (the access log records the path without the query).

An active token whose host Secret the reconciler has not written yet gets 503 with
Retry-After: the script needs the host CA hash observed with it.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from api.errors import ApiError
from api.openapi import RouteTable
from api.ratelimits import enforce
from api.state import services
from kubebyon.domain.join_script import HostAgentJoin, JoinMechanism, JoinRequest
from kubebyon.domain.join_tokens import parse_value
from kubebyon.domain.tokens import token_hash

routes = RouteTable("join")
log = structlog.get_logger("kubebyon.join")

MECHANISM: JoinMechanism = HostAgentJoin()
SCRIPT_TYPE = "text/x-shellscript"
INVALID = (
    "kubebyon: this join token is not valid (unknown, expired, revoked or already used); "
    "create a new one in the console"
)
NOT_READY = "kubebyon: this join token is still being set up; retry in a few seconds"
NOT_READY_RETRY_SECONDS = 5
TOKEN_QUERY = (("token", "the join token value (kbt_…)"),)


def _line(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=text + "\n",
        content_type="text/plain",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def _script(request: web.Request, cluster_id: str | None) -> web.Response:
    svc = services(request)
    try:
        enforce(request, svc.join_limiter, "join")
    except ApiError as exc:
        return _line(exc.status, f"kubebyon: {exc.message}", exc.headers)
    value = request.query.get("token", "")
    token = parse_value(value)
    if token is None:
        return _line(404, INVALID)
    db = svc.db
    row = await db.fetchrow(db.q.join_token_for_script, token_hash(value))
    if row is None or not row["usable"] or cluster_id not in (None, row["cluster_id"]):
        return _line(404, INVALID)
    server_url = svc.settings.host_api_url
    if not row["ready"] or server_url is None:
        retry = {"Retry-After": str(NOT_READY_RETRY_SECONDS)}
        return _line(503, NOT_READY, retry)
    script = MECHANISM.script(
        JoinRequest(
            cluster_id=row["cluster_id"],
            join_token_id=row["id"],
            token=token,
            expires_at=row["expires_at"],
            server_url=server_url,
            k3s_version=row["k3s_version"],
            ca_hash=row["host_ca_hash"],
        )
    )
    log.info("join script served", join_token_id=row["id"], cluster_id=row["cluster_id"])
    return web.Response(
        text=script, content_type=SCRIPT_TYPE, headers={"Cache-Control": "no-store"}
    )


@routes.route(
    "GET",
    "/join",
    summary="The join script for a join token (POSIX sh); errors are one line of text",
    auth="none",
    response_content_type=SCRIPT_TYPE,
    statuses=(404, 429, 503),
    query=TOKEN_QUERY,
)
async def join_script(request: web.Request) -> web.Response:
    return await _script(request, None)


@routes.route(
    "GET",
    "/api/join/clusters/{clusterID}/script",
    summary="The join script (legacy path, kept for old clients)",
    auth="none",
    response_content_type=SCRIPT_TYPE,
    statuses=(404, 429, 503),
    query=TOKEN_QUERY,
)
async def legacy_join_script(request: web.Request) -> web.Response:
    return await _script(request, request.match_info["clusterID"])
