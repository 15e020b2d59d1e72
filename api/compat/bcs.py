"""The bk-bcs ``bcs-user-manager`` dialect (seed 002) under ``/bcsapi/v4/usermanager/v1``.

Callers send ``Authorization: Bearer <usertoken>``: a bk-bcs user token, or the KubeBYON
API key of a platform admin, which counts as a bk-bcs admin token. A token that is
missing, unknown, expired or of the wrong user type gets the same 401 bcs-user-manager
gives. Cluster agents update credentials with the cluster's register token alone. The
middleware's policies know nothing of bk-bcs tokens, so every route is public to it and
the check is here. Permissions are roles of the authorization engine (origin 'bcs');
``verify`` asks that engine. A registered cluster is also an imported KubeBYON cluster
(same id, backend ``imported``) whose kubeconfig is built from the agent's credentials; the
connection reconciler reports its reachability. Errors: ``{result: false, code, message,
data: null}`` (api/errors.py); the rules are in docs/authorization.md, "bk-bcs".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from api.auth import actor, bearer_credential, current, remote_ip
from api.body import read_json
from api.errors import ApiError
from api.models.bcs import (
    BcsClusterCreateRequest,
    BcsClusterOut,
    BcsClusterResponse,
    BcsCredentialsEntry,
    BcsCredentialsListResponse,
    BcsCredentialsOut,
    BcsCredentialsResponse,
    BcsCredentialsUpdateRequest,
    BcsEmptyResponse,
    BcsPermission,
    BcsPermissionListResponse,
    BcsPermissionOut,
    BcsPermissionQuery,
    BcsPermissionsRequest,
    BcsRegisterTokenOut,
    BcsRegisterTokenResponse,
    BcsUserOut,
    BcsUserResponse,
    BcsVerifyOut,
    BcsVerifyRequest,
    BcsVerifyResponse,
)
from api.openapi import RouteTable
from api.responses import json_model
from api.routes.admin_users import read_query
from api.state import Services, services
from kubebyon.db import audit
from kubebyon.db.audit import Actor
from kubebyon.db.authz import authz_changed
from kubebyon.db.database import Conn
from kubebyon.db.desired_state import wake
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.authz import Subjects, subjects_of
from kubebyon.domain.bcs import (
    ADMIN_ONLY,
    ANONYMOUS_MESSAGE,
    CLUSTER_TYPES,
    CREATORS,
    UserType,
    cluster_id_problem,
    credentials_problem,
    grant_role,
    imported_kubeconfig,
    is_user_token,
    new_register_token,
    new_user_token,
    parse_grant_role,
    plain_refresh,
    refresh_days_problem,
    resource_problem,
    server_addresses_problem,
    token_expiry,
    user_name_problem,
    verify_access,
)
from kubebyon.domain.tokens import same_digest, token_hash
from kubebyon.secretbox import SecretBox, SecretKeyError

routes = RouteTable("bcs")
M = TypeVar("M", bound=BaseModel)
PREFIX = "/bcsapi/v4/usermanager/v1"
CONNECTION_RECONCILER = "connection"  # reconcilers/connection.py


@dataclass(frozen=True)
class Caller:
    bcs_user_id: int | None  # None: a platform admin's KubeBYON API key
    actor: Actor


async def _caller(request: web.Request, accepted: frozenset[UserType]) -> Caller:
    principal = current(request)
    if principal is not None and principal.method == "api_key" and principal.is_admin:
        return Caller(None, actor(request))
    token = bearer_credential(request.headers.get("Authorization"))
    if token is not None and is_user_token(token):
        svc = services(request)
        row = await svc.db.fetchrow(Q.bcs_caller_by_token, token_hash(token))
        if row is not None and row["expires_at"] > svc.now() and row["user_type"] in accepted:
            kind = "admin" if row["user_type"] == UserType.ADMIN else "user"
            return Caller(row["id"], Actor(row["user_id"], kind, "bcs_token", remote_ip(request)))
    raise ApiError(401, ANONYMOUS_MESSAGE)


async def _link(conn: Conn, names: list[str]) -> bool:
    """Link bk-bcs users to accounts created after them (same e-mail as the name). A new
    link changes what the account may do, so cached decisions are dropped at commit."""
    linked = await conn.fetch(Q.bcs_link_users, names)
    if linked:
        await authz_changed(conn)
    return bool(linked)


def _user_name(request: web.Request) -> str:
    name = request.match_info["name"]
    problem = user_name_problem(name)
    if problem:
        raise ApiError(400, problem)
    return name


def _user_not_found(name: str) -> ApiError:
    return ApiError(404, f"user with user_name={name} not found")


def _user_out(row: asyncpg.Record, token: str) -> BcsUserOut:
    return BcsUserOut(
        id=row["id"],
        name=row["name"],
        user_type=row["user_type"],
        user_token=token,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
    )


def _user_routes(user_type: UserType) -> None:
    """POST and GET /users/{admin|saas|plain}/{name}: the same rules for each type, only
    the token's lifetime and who may call differ."""
    kind = user_type.name.lower()
    accepted = CREATORS[user_type]
    who = "an admin" if accepted == ADMIN_ONLY else "an admin or saas"

    async def create_user(request: web.Request) -> web.Response:
        caller = await _caller(request, accepted)
        name = _user_name(request)
        svc = services(request)
        token = new_user_token()
        now = svc.now()
        async with svc.db.transaction() as conn:
            row = await conn.fetchrow(
                Q.bcs_insert_user,
                name,
                int(user_type),
                token_hash(token),
                svc.secrets.encrypt(token),
                token_expiry(user_type, now),
                now,
            )
            if row is None:
                raise ApiError(409, f"user [{name}] already exist")
            if row["user_id"] is not None:
                await authz_changed(conn)  # the account now answers to this name too
            await audit.record(
                conn,
                caller.actor,
                resource_type="bcs_user",
                action="create",
                resource_id=str(row["id"]),
                message=f"created bk-bcs {kind} user {name!r}",
                extra={"name": name, "user_type": int(user_type)},
            )
        if row["user_id"] is not None:
            svc.authorizer.invalidate()
        return json_model(BcsUserResponse(data=_user_out(row, token)))

    async def get_user(request: web.Request) -> web.Response:
        await _caller(request, accepted)
        name = _user_name(request)
        svc = services(request)
        row = await svc.db.fetchrow(Q.bcs_get_user, name, int(user_type))
        if row is None:
            raise _user_not_found(name)
        token = svc.secrets.decrypt(row["token_encrypted"])
        return json_model(BcsUserResponse(data=_user_out(row, token)))

    path = f"{PREFIX}/users/{kind}/{{name}}"
    for method, handler, summary, statuses in (
        ("POST", create_user, f"bk-bcs: create a {kind} user", (400, 401, 409)),
        ("GET", get_user, f"bk-bcs: a {kind} user and its usertoken", (400, 401, 404)),
    ):
        handler.__name__ = f"{handler.__name__.split('_')[0]}_{kind}_user"
        routes.route(
            method,
            path,
            summary=f"{summary} (needs {who} token)",
            response=BcsUserResponse,
            auth="none",
            statuses=statuses,
        )(handler)


for _user_type in UserType:
    _user_routes(_user_type)


async def _refresh(
    request: web.Request,
    caller: Caller,
    user_type: UserType,
    renew: Callable[[datetime, datetime], tuple[bool, datetime]],
) -> web.Response:
    """``renew(expires_at, now)`` says whether the token is replaced and its new expiry."""
    name = _user_name(request)
    svc = services(request)
    token = new_user_token()
    now = svc.now()
    async with svc.db.transaction() as conn:
        locked = await conn.fetchrow(Q.bcs_lock_user, name, int(user_type))
        if locked is None:
            raise _user_not_found(name)
        replace, expires_at = renew(locked["expires_at"], now)
        row = await conn.fetchrow(
            Q.bcs_refresh_user,
            locked["id"],
            token_hash(token) if replace else None,
            svc.secrets.encrypt(token) if replace else None,
            expires_at,
            now,
        )
        assert row is not None  # the row is locked
        linked = await _link(conn, [name])
        await audit.record(
            conn,
            caller.actor,
            resource_type="bcs_user",
            action="refresh_token",
            resource_id=str(locked["id"]),
            message=f"refreshed the usertoken of bk-bcs {user_type.name.lower()} user {name!r}"
            + (" (new token)" if replace else " (new expiry)"),
            extra={"name": name, "new_token": replace},
        )
    if linked:
        svc.authorizer.invalidate()
    current_token = token if replace else svc.secrets.decrypt(row["token_encrypted"])
    return json_model(BcsUserResponse(data=_user_out(row, current_token)))


@routes.route(
    "PUT",
    f"{PREFIX}/users/saas/{{name}}/refresh",
    summary="bk-bcs: give a saas user a new usertoken, valid 10 years (needs an admin token)",
    response=BcsUserResponse,
    auth="none",
    statuses=(400, 401, 404),
)
async def refresh_saas_token(request: web.Request) -> web.Response:
    caller = await _caller(request, ADMIN_ONLY)
    return await _refresh(
        request, caller, UserType.SAAS, lambda _, now: (True, token_expiry(UserType.SAAS, now))
    )


@routes.route(
    "PUT",
    f"{PREFIX}/users/plain/{{name}}/refresh/{{days}}",
    summary="bk-bcs: extend a plain user's usertoken to now + days; an expired one is "
    "replaced (needs an admin or saas token)",
    response=BcsUserResponse,
    auth="none",
    statuses=(400, 401, 404),
)
async def refresh_plain_token(request: web.Request) -> web.Response:
    caller = await _caller(request, CREATORS[UserType.PLAIN])
    raw = request.match_info["days"]
    problem = refresh_days_problem(raw)
    if problem:
        raise ApiError(400, problem)
    days = int(raw)
    return await _refresh(
        request,
        caller,
        UserType.PLAIN,
        lambda expires_at, now: plain_refresh(expires_at, now, days),
    )


def _cluster_id(request: web.Request) -> str:
    cluster_id = request.match_info["cluster_id"]
    problem = cluster_id_problem(cluster_id)
    if problem:
        raise ApiError(400, problem)
    return cluster_id


@routes.route(
    "POST",
    f"{PREFIX}/clusters",
    summary="bk-bcs: register a cluster (k8s, mesos, or tke with its tke id and region); "
    "it shows in the console as an imported cluster; needs an admin token",
    request=BcsClusterCreateRequest,
    response=BcsClusterResponse,
    auth="none",
    statuses=(400, 401, 409),
)
async def register_bcs_cluster(request: web.Request) -> web.Response:
    caller = await _caller(request, ADMIN_ONLY)
    body = await read_json(request, BcsClusterCreateRequest)
    problem = cluster_id_problem(body.cluster_id)
    if problem:
        raise ApiError(400, problem)
    tke = body.cluster_type == "tke"
    if tke and not (body.tke_cluster_id.strip() and body.tke_cluster_region.strip()):
        raise ApiError(400, "a tke cluster needs tke_cluster_id and tke_cluster_region")
    svc = services(request)
    async with svc.db.transaction() as conn:
        # As bcs-user-manager does, the tke fields are kept for tke clusters only.
        row = await conn.fetchrow(
            Q.bcs_insert_cluster,
            body.cluster_id,
            CLUSTER_TYPES[body.cluster_type],
            body.tke_cluster_id if tke else "",
            body.tke_cluster_region if tke else "",
            caller.bcs_user_id,
        )
        if row is None:
            raise ApiError(409, f"create cluster failed, cluster [{body.cluster_id}] already exist")
        try:
            await conn.execute(Q.bcs_insert_imported_cluster, body.cluster_id, caller.actor.user_id)
        except asyncpg.UniqueViolationError:  # the transaction is aborted: nothing is kept
            raise ApiError(
                409,
                f"create cluster failed, a KubeBYON cluster uses the name [{body.cluster_id}]",
            ) from None
        await audit.record(
            conn,
            caller.actor,
            resource_type="bcs_cluster",
            action="create",
            resource_id=body.cluster_id,
            message=f"registered bk-bcs {body.cluster_type} cluster {body.cluster_id!r}",
            cluster_id=body.cluster_id,
            cluster_name=body.cluster_id,
        )
    cluster = BcsClusterOut(
        id=row["cluster_id"],
        cluster_type=row["cluster_type"],
        tke_cluster_id=row["tke_cluster_id"],
        tke_cluster_region=row["tke_cluster_region"],
        creator_id=row["creator_id"],
        created_at=row["created_at"],
    )
    return json_model(BcsClusterResponse(data=cluster))


def _register_token_out(row: asyncpg.Record, token: str) -> BcsRegisterTokenOut:
    return BcsRegisterTokenOut(
        id=row["id"], cluster_id=row["cluster_id"], token=token, created_at=row["created_at"]
    )


REGISTER_TOKENS = f"{PREFIX}/clusters/{{cluster_id}}/register_tokens"


@routes.route(
    "POST",
    REGISTER_TOKENS,
    summary="bk-bcs: create the cluster's register token (one per cluster); needs an admin token",
    response=BcsRegisterTokenResponse,
    auth="none",
    statuses=(400, 401, 404, 409),
)
async def create_register_token(request: web.Request) -> web.Response:
    caller = await _caller(request, ADMIN_ONLY)
    cluster_id = _cluster_id(request)
    svc = services(request)
    token = new_register_token()
    async with svc.db.transaction() as conn:
        if not await conn.fetchval(Q.bcs_cluster_exists, cluster_id):
            raise ApiError(404, f"cluster [{cluster_id}] not found")
        row = await conn.fetchrow(
            Q.bcs_insert_register_token, cluster_id, token_hash(token), svc.secrets.encrypt(token)
        )
        if row is None:
            raise ApiError(409, f"register token of cluster [{cluster_id}] already exist")
        await audit.record(
            conn,
            caller.actor,
            resource_type="bcs_register_token",
            action="create",
            resource_id=cluster_id,
            message=f"created the register token of bk-bcs cluster {cluster_id!r}",
        )
    return json_model(BcsRegisterTokenResponse(data=_register_token_out(row, token)))


@routes.route(
    "GET",
    REGISTER_TOKENS,
    summary="bk-bcs: the cluster's register token; needs an admin token",
    response=BcsRegisterTokenResponse,
    auth="none",
    statuses=(400, 401, 404),
)
async def get_register_token(request: web.Request) -> web.Response:
    await _caller(request, ADMIN_ONLY)
    cluster_id = _cluster_id(request)
    svc = services(request)
    row = await svc.db.fetchrow(Q.bcs_get_register_token, cluster_id)
    if row is None:
        raise ApiError(404, "register token not found")
    token = svc.secrets.decrypt(row["token_encrypted"])
    return json_model(BcsRegisterTokenResponse(data=_register_token_out(row, token)))


CREDENTIALS = f"{PREFIX}/clusters/{{cluster_id}}/credentials"


@routes.route(
    "PUT",
    CREDENTIALS,
    summary="bk-bcs: the cluster agent reports API server addresses, CA and token (the "
    "imported cluster's kubeconfig); authenticated by register_token in the body only",
    request=BcsCredentialsUpdateRequest,
    response=BcsEmptyResponse,
    auth="none",
    statuses=(400, 401),
)
async def update_credentials(request: web.Request) -> web.Response:
    body = await read_json(request, BcsCredentialsUpdateRequest)
    cluster_id = request.match_info["cluster_id"]
    svc = services(request)
    stored = await svc.db.fetchrow(Q.bcs_get_register_token, cluster_id)
    if stored is None or not same_digest(
        bytes(stored["token_hash"]), token_hash(body.register_token)
    ):
        raise ApiError(401, ANONYMOUS_MESSAGE)
    problem = server_addresses_problem(
        body.server_addresses,
        allow_loopback=svc.settings.bcs_allow_loopback_server_addresses,
    )
    if problem:
        raise ApiError(400, problem)
    server = body.server_addresses.split(";")[0]
    unusable = credentials_problem(body.cacert_data, body.user_token)
    kubeconfig = None
    if unusable is None:
        kubeconfig = imported_kubeconfig(cluster_id, server, body.cacert_data, body.user_token)
    async with svc.db.transaction() as conn:
        await conn.execute(Q.bcs_lock_cluster, cluster_id)
        current = await conn.fetchrow(Q.bcs_get_credentials, cluster_id)
        # bcs-kube-agent reports periodically: the same credentials again are no change.
        changed = current is None or not _same_credentials(svc.secrets, current, body)
        await conn.execute(
            Q.bcs_save_credentials,
            cluster_id,
            body.server_addresses,
            svc.secrets.encrypt(body.cacert_data),
            svc.secrets.encrypt(body.user_token),
        )
        if changed:
            imported = await conn.fetchrow(
                Q.bcs_import_credentials,
                cluster_id,
                server,
                None if kubeconfig is None else svc.secrets.encrypt(kubeconfig),
                unusable,
            )
            if imported is not None and kubeconfig is not None:
                await wake(conn, CONNECTION_RECONCILER, cluster_id)
            await audit.record(
                conn,
                Actor(None, "user", "register_token", remote_ip(request)),
                resource_type="bcs_credentials",
                action="update",
                resource_id=cluster_id,
                message=f"updated the credentials of bk-bcs cluster {cluster_id!r}"
                + (f" ({unusable})" if unusable else ""),
                cluster_id=cluster_id,
                cluster_name=cluster_id,
                extra={"server_addresses": body.server_addresses, "usable": unusable is None},
            )
    return json_model(BcsEmptyResponse())


def _same_credentials(
    secrets: SecretBox, row: asyncpg.Record, body: BcsCredentialsUpdateRequest
) -> bool:
    try:
        return (
            row["server_addresses"] == body.server_addresses
            and secrets.decrypt(row["ca_cert_encrypted"]) == body.cacert_data
            and secrets.decrypt(row["user_token_encrypted"]) == body.user_token
        )
    except SecretKeyError:  # unreadable with today's keys: the new ones replace them
        return False


def _credentials_entry(svc: Services, row: asyncpg.Record) -> BcsCredentialsEntry:
    return BcsCredentialsEntry(
        server_addresses=row["server_addresses"],
        ca_cert_data=svc.secrets.decrypt(row["ca_cert_encrypted"]),
        user_token=svc.secrets.decrypt(row["user_token_encrypted"]),
        cluster_domain=row["cluster_domain"],
    )


@routes.route(
    "GET",
    CREDENTIALS,
    summary="bk-bcs: a cluster's credentials; needs an admin token",
    response=BcsCredentialsResponse,
    auth="none",
    statuses=(400, 401, 404),
)
async def get_credentials(request: web.Request) -> web.Response:
    await _caller(request, ADMIN_ONLY)
    cluster_id = _cluster_id(request)
    svc = services(request)
    row = await svc.db.fetchrow(Q.bcs_get_credentials, cluster_id)
    if row is None:
        raise ApiError(404, "credentials not found")
    credentials = BcsCredentialsOut(
        id=row["id"],
        cluster_id=row["cluster_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        **_credentials_entry(svc, row).model_dump(),
    )
    return json_model(BcsCredentialsResponse(data=credentials))


@routes.route(
    "GET",
    f"{PREFIX}/clusters/credentials",
    summary="bk-bcs: the credentials of every cluster, keyed by cluster id; needs an admin token",
    response=BcsCredentialsListResponse,
    auth="none",
    statuses=(401,),
)
async def list_credentials(request: web.Request) -> web.Response:
    await _caller(request, ADMIN_ONLY)
    svc = services(request)
    rows = await svc.db.fetch(Q.bcs_list_credentials)
    data = {row["cluster_id"]: _credentials_entry(svc, row) for row in rows}
    return json_model(BcsCredentialsListResponse(data=data))


PERMISSIONS = f"{PREFIX}/permissions"


async def _checked_permissions(request: web.Request) -> list[BcsPermission]:
    """The body's grants, each resource well-formed and each user an existing bk-bcs user,
    or a 400 naming the first problem: nothing is written unless all are good."""
    body = await read_json(request, BcsPermissionsRequest)
    grants = body.spec.permissions
    for index, grant in enumerate(grants):
        problem = user_name_problem(grant.user_name) or resource_problem(
            grant.resource_type, grant.resource
        )
        if problem:
            raise ApiError(400, f"spec.permissions.{index}: {problem}")
    names = sorted({grant.user_name for grant in grants})
    existing = {
        row["name"] for row in await services(request).db.fetch(Q.bcs_existing_user_names, names)
    }
    missing = [name for name in names if name not in existing]
    if missing:
        raise ApiError(400, f"user [{missing[0]}] not exist")
    return grants


def _permission_text(grant: BcsPermission) -> str:
    return f"bk-bcs {grant.role} on {grant.resource_type} {grant.resource}"


@routes.route(
    "POST",
    PERMISSIONS,
    summary="bk-bcs: grant roles (manager, viewer) on clusters, namespaces or storage; "
    "needs an admin token",
    request=BcsPermissionsRequest,
    response=BcsEmptyResponse,
    auth="none",
    statuses=(400, 401, 409),
)
async def grant_permissions(request: web.Request) -> web.Response:
    caller = await _caller(request, ADMIN_ONLY)
    grants = await _checked_permissions(request)
    svc = services(request)
    async with svc.db.transaction() as conn:
        await _link(conn, sorted({grant.user_name for grant in grants}))
        for grant in grants:
            role = grant_role(grant.role, grant.resource_type, grant.resource)
            role_id = await conn.fetchval(
                Q.bcs_upsert_grant_role,
                role.name,
                role.description,
                list(role.clusters),
                list(role.namespaces),
                list(role.resources),
                list(role.verbs),
            )
            if role_id is None:
                raise ApiError(409, f"a role named {role.name!r} exists and is not a bk-bcs role")
            if await conn.fetchval(Q.bcs_assign, role_id, grant.user_name) is None:
                continue  # already granted
            await audit.record(
                conn,
                caller.actor,
                resource_type="permission",
                action="grant",
                resource_id=role.name,
                message=f"granted {_permission_text(grant)} to {grant.user_name!r}",
                extra={"user_name": grant.user_name, "role_id": role_id},
            )
        # Always: the upsert may also have put back a role's patterns.
        await authz_changed(conn)
    svc.authorizer.invalidate()
    return json_model(BcsEmptyResponse())


@routes.route(
    "DELETE",
    PERMISSIONS,
    summary="bk-bcs: revoke roles granted with POST /permissions; needs an admin token",
    request=BcsPermissionsRequest,
    response=BcsEmptyResponse,
    auth="none",
    statuses=(400, 401),
)
async def revoke_permissions(request: web.Request) -> web.Response:
    caller = await _caller(request, ADMIN_ONLY)
    grants = await _checked_permissions(request)
    svc = services(request)
    async with svc.db.transaction() as conn:
        for grant in grants:
            role = grant_role(grant.role, grant.resource_type, grant.resource)
            role_id = await conn.fetchval(Q.bcs_lock_grant_role, role.name)
            if (
                role_id is None
                or await conn.fetchval(Q.bcs_unassign, role_id, grant.user_name) is None
            ):
                continue  # not granted
            await conn.execute(Q.bcs_drop_unused_role, role_id)
            await audit.record(
                conn,
                caller.actor,
                resource_type="permission",
                action="revoke",
                resource_id=role.name,
                message=f"revoked {_permission_text(grant)} from {grant.user_name!r}",
                extra={"user_name": grant.user_name, "role_id": role_id},
            )
        await authz_changed(conn)
    svc.authorizer.invalidate()
    return json_model(BcsEmptyResponse())


async def _body_or_query(request: web.Request, model: type[M]) -> M:
    """bk-bcs clients send a JSON body with GET; query parameters work as well."""
    if request.can_read_body:
        return await read_json(request, model)
    return read_query(request, model)


@routes.route(
    "GET",
    PERMISSIONS,
    summary="bk-bcs: a user's grants on one resource type (JSON body or query parameters "
    "user_name, resource_type); needs an admin token",
    response=BcsPermissionListResponse,
    auth="none",
    statuses=(400, 401, 404),
    query=(("user_name", "bk-bcs user name"), ("resource_type", "cluster, namespace, ...")),
)
async def list_permissions(request: web.Request) -> web.Response:
    await _caller(request, ADMIN_ONLY)
    query = await _body_or_query(request, BcsPermissionQuery)
    svc = services(request)
    if not await svc.db.fetch(Q.bcs_existing_user_names, [query.user_name]):
        raise ApiError(404, f"user [{query.user_name}] not found")
    found = []
    for row in await svc.db.fetch(Q.bcs_user_grant_roles, query.user_name):
        parsed = parse_grant_role(row["name"])
        if parsed is not None and parsed[1] == query.resource_type:
            role, resource_type, resource = parsed
            found.append(
                BcsPermissionOut(resource_type=resource_type, resource=resource, role=role)
            )
    return json_model(BcsPermissionListResponse(data=found))


@routes.route(
    "GET",
    f"{PERMISSIONS}/verify",
    summary="bk-bcs: may the holder of user_token do action on resource? (JSON body or "
    "query parameters); needs an admin token",
    response=BcsVerifyResponse,
    auth="none",
    statuses=(400, 401),
    query=(
        ("user_token", "the usertoken to check"),
        ("resource_type", "cluster, namespace, namespace_scoped or storage"),
        ("resource", "cluster id, <cluster id>/<namespace> or *"),
        ("action", "GET, POST, PUT, PATCH or DELETE"),
    ),
)
async def verify_permission(request: web.Request) -> web.Response:
    await _caller(request, ADMIN_ONLY)
    query = await _body_or_query(request, BcsVerifyRequest)
    problem = resource_problem(query.resource_type, query.resource)
    if problem:
        raise ApiError(400, problem)
    svc = services(request)
    token = query.user_token
    row = None
    if is_user_token(token):
        row = await svc.db.fetchrow(Q.bcs_caller_by_token, token_hash(token))
    if row is None:
        verdict = BcsVerifyOut(allowed=False, message=f"usertoken [{token}] is invalid")
    elif row["expires_at"] <= svc.now():
        verdict = BcsVerifyOut(allowed=False, message=f"usertoken [{token}] is expired")
    else:
        allowed = await _bcs_user_allowed(svc, row, query)
        verdict = BcsVerifyOut(allowed=allowed, message="" if allowed else "no permission")
    return json_model(BcsVerifyResponse(data=verdict))


async def _bcs_user_allowed(svc: Services, row: asyncpg.Record, query: BcsVerifyRequest) -> bool:
    """The engine's answer for a bk-bcs user: the person it is linked to (platform admins
    are always allowed) or, unlinked, the name alone."""
    account = row["user_id"]
    if account is None:
        subjects = Subjects(frozenset({row["name"]}))
    elif row["account_role"] == "admin" and row["account_status"] == "active":
        return True
    else:
        subjects = subjects_of(account, row["account_email"], aliases=(row["name"],))
    access = verify_access(query.resource_type, query.resource, query.action)
    return await svc.authorizer.allowed(subjects, account, access)
