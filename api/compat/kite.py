"""The Kite RBAC dialect (seed 003) at ``/api/v1/admin/roles/``, with or without the
trailing slash. Roles and assignments live in the tables the authorization engine
decides with, so a role assigned here changes what its subjects may do at once.

Callers are platform admins and principals holding the ``admin`` role (directly or
through a group), signed in or with an API key (``Authorization: <key>`` or
``Bearer <key>``). The middleware's ``admin`` policy only knows account roles, so the
routes are public to it and the check is here. Safer than Kite: the system roles
(admin, viewer) cannot be edited or deleted; they can be assigned (that is how admins
are made). Errors are ``{"error": "..."}`` (api/errors.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from api.auth import actor, current
from api.body import read_json
from api.errors import ApiError
from api.models.kite import (
    AssignmentOut,
    AssignmentResponse,
    AssignRequest,
    RoleListResponse,
    RoleOut,
    RoleRequest,
    RoleResponse,
    SuccessResponse,
)
from api.openapi import Handler, RouteTable
from api.responses import json_model
from api.state import services
from kubebyon.db import audit
from kubebyon.db.authz import authz_changed
from kubebyon.db.database import Conn, Database
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.authz import ADMIN_ROLE, SUBJECT_TYPES, VERBS, WILDCARD, pattern_problem

routes = RouteTable("kite")
ROLES = "/api/v1/admin/roles"
ROLE = ROLES + "/{id}"
_MAX_ROLE_ID = 2**31 - 1  # roles.id is an integer column


def _on_collection(
    method: str,
    *,
    summary: str,
    request: type[BaseModel] | None = None,
    response: type[BaseModel],
    statuses: Iterable[int],
    success_status: int = 200,
) -> Callable[[Handler], Handler]:
    """Kite clients call the collection with and without the trailing slash: one handler
    on both paths, each with its own OpenAPI operation id."""

    def register(handler: Handler) -> Handler:
        async def without_slash(request: web.Request) -> web.StreamResponse:
            return await handler(request)

        without_slash.__name__ = f"{handler.__name__}_without_slash"
        for path, target in ((ROLES + "/", handler), (ROLES, without_slash)):
            routes.route(
                method,
                path,
                summary=summary,
                request=request,
                response=response,
                auth="none",
                statuses=statuses,
                success_status=success_status,
            )(target)
        return handler

    return register


async def _require_admin(request: web.Request) -> None:
    """A platform admin, or a principal holding the ``admin`` role."""
    principal = current(request)
    if principal is None:
        if request.headers.get("Authorization"):
            raise ApiError(401, "invalid or expired API key")
        raise ApiError(401, "authentication required")
    if principal.is_admin:
        return
    authorizer = services(request).authorizer
    if not await authorizer.has_role(principal.subjects, principal.user_id, ADMIN_ROLE):
        raise ApiError(403, "admin role required")


def _role_not_found() -> ApiError:
    return ApiError(404, "role not found")


def _role_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "invalid role id")
    role_id = int(raw)
    if role_id > _MAX_ROLE_ID:
        raise _role_not_found()
    return role_id


def _checked_role(body: RoleRequest) -> RoleRequest:
    """The role to store (name trimmed), or a 400 naming the first problem."""
    name = body.name.strip()
    if not name:
        raise ApiError(400, "role name is required")
    if not name.isprintable():
        raise ApiError(400, "role name must be printable text")
    for field, patterns in (
        ("clusters", body.clusters),
        ("namespaces", body.namespaces),
        ("resources", body.resources),
    ):
        for pattern in patterns:
            problem = pattern_problem(pattern)
            if problem:
                raise ApiError(400, f"{field}: {problem}")
    for verb in body.verbs:
        # A verb may be denied ("!delete") like any other pattern.
        if verb.removeprefix("!") not in (*VERBS, WILDCARD):
            raise ApiError(400, f"unknown verb {verb!r}: use {', '.join(VERBS)} or *")
    return body.model_copy(update={"name": name})


def _checked_subject(subject_type: str, subject: str) -> tuple[str, str]:
    if subject_type not in SUBJECT_TYPES:
        raise ApiError(400, "subjectType must be 'user' or 'group'")
    subject = subject.strip()
    if not subject:
        raise ApiError(400, "subject is required")
    if subject_type == "user" and "@" in subject:
        subject = subject.lower()  # accounts answer to their email in lower case
    return subject_type, subject


def _assignment_out(row: asyncpg.Record) -> AssignmentOut:
    return AssignmentOut(
        id=row["id"],
        roleId=row["role_id"],
        subjectType=row["subject_type"],
        subject=row["subject"],
        createdAt=row["created_at"],
    )


async def _roles(source: Database | Conn, role_id: int | None = None) -> list[RoleOut]:
    """Every role (or one) with its assignments, ordered by id."""
    rows = await source.fetch(Q.kite_roles, role_id)
    assignments: defaultdict[int, list[AssignmentOut]] = defaultdict(list)
    for row in await source.fetch(Q.kite_assignments, role_id):
        assignments[row["role_id"]].append(_assignment_out(row))
    return [
        RoleOut(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            isSystem=row["is_system"],
            clusters=row["clusters"],
            namespaces=row["namespaces"],
            resources=row["resources"],
            verbs=row["verbs"],
            assignments=assignments[row["id"]],
            createdAt=row["created_at"],
            updatedAt=row["updated_at"],
        )
        for row in rows
    ]


async def _role(source: Database | Conn, role_id: int) -> RoleOut:
    found = await _roles(source, role_id)
    if not found:
        raise _role_not_found()
    return found[0]


async def _locked_role(conn: Conn, role_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(Q.kite_lock_role, role_id)
    if row is None:
        raise _role_not_found()
    return row


async def _changed(
    conn: Conn, request: web.Request, *, action: str, role_id: int, message: str
) -> None:
    """In the write's transaction: every replica drops cached decisions at commit, and
    the change is audited. The caller invalidates this process's cache after commit."""
    await authz_changed(conn)
    await audit.record(
        conn,
        actor(request),
        resource_type="role",
        action=action,
        resource_id=str(role_id),
        message=message,
    )


def _name_taken(name: str) -> ApiError:
    return ApiError(409, f"a role named {name!r} already exists")


@_on_collection(
    "GET",
    summary="Kite: every role with its assignments, ordered by id",
    response=RoleListResponse,
    statuses=(401, 403),
)
async def list_roles(request: web.Request) -> web.Response:
    await _require_admin(request)
    roles = await _roles(services(request).db)
    return json_model(RoleListResponse(roles=roles))


@_on_collection(
    "POST",
    summary="Kite: create a role",
    request=RoleRequest,
    response=RoleResponse,
    statuses=(400, 401, 403, 409),
    success_status=201,
)
async def create_role(request: web.Request) -> web.Response:
    await _require_admin(request)
    body = _checked_role(await read_json(request, RoleRequest))
    svc = services(request)
    try:
        async with svc.db.transaction() as conn:
            role_id = await conn.fetchval(
                Q.kite_insert_role,
                body.name,
                body.description,
                body.clusters,
                body.namespaces,
                body.resources,
                body.verbs,
            )
            await _changed(
                conn,
                request,
                action="create",
                role_id=role_id,
                message=f"created role {body.name!r}",
            )
            role = await _role(conn, role_id)
    except asyncpg.UniqueViolationError:
        raise _name_taken(body.name) from None
    svc.authorizer.invalidate()
    return json_model(RoleResponse(role=role), status=201)


@routes.route(
    "GET",
    ROLE,
    summary="Kite: one role with its assignments",
    response=RoleResponse,
    auth="none",
    statuses=(400, 401, 403, 404),
)
async def get_role(request: web.Request) -> web.Response:
    await _require_admin(request)
    role = await _role(services(request).db, _role_id(request))
    return json_model(RoleResponse(role=role))


@routes.route(
    "PUT",
    ROLE,
    summary="Kite: replace a role's name, description and rules (not a system role)",
    request=RoleRequest,
    response=RoleResponse,
    auth="none",
    statuses=(400, 401, 403, 404, 409),
)
async def update_role(request: web.Request) -> web.Response:
    await _require_admin(request)
    role_id = _role_id(request)
    body = _checked_role(await read_json(request, RoleRequest))
    svc = services(request)
    try:
        async with svc.db.transaction() as conn:
            current_row = await _locked_role(conn, role_id)
            if current_row["is_system"]:
                raise ApiError(403, "system roles cannot be edited")
            await conn.execute(
                Q.kite_update_role,
                role_id,
                body.name,
                body.description,
                body.clusters,
                body.namespaces,
                body.resources,
                body.verbs,
            )
            renamed = f" (was {current_row['name']!r})" if current_row["name"] != body.name else ""
            message = f"updated role {body.name!r}{renamed}"
            await _changed(conn, request, action="update", role_id=role_id, message=message)
            role = await _role(conn, role_id)
    except asyncpg.UniqueViolationError:
        raise _name_taken(body.name) from None
    svc.authorizer.invalidate()
    return json_model(RoleResponse(role=role))


@routes.route(
    "DELETE",
    ROLE,
    summary="Kite: delete a role and its assignments (not a system role)",
    response=SuccessResponse,
    auth="none",
    statuses=(400, 401, 403, 404),
)
async def delete_role(request: web.Request) -> web.Response:
    await _require_admin(request)
    role_id = _role_id(request)
    svc = services(request)
    async with svc.db.transaction() as conn:
        row = await _locked_role(conn, role_id)
        if row["is_system"]:
            raise ApiError(403, "system roles cannot be deleted")
        await conn.execute(Q.kite_delete_role, role_id)
        message = f"deleted role {row['name']!r}"
        await _changed(conn, request, action="delete", role_id=role_id, message=message)
    svc.authorizer.invalidate()
    return json_model(SuccessResponse())


@routes.route(
    "POST",
    ROLE + "/assign",
    summary="Kite: assign a role to a user or group (200 with the existing assignment "
    "when the subject already holds it)",
    request=AssignRequest,
    response=AssignmentResponse,
    auth="none",
    statuses=(400, 401, 403, 404),
    success_status=201,
)
async def assign_role(request: web.Request) -> web.Response:
    await _require_admin(request)
    role_id = _role_id(request)
    body = await read_json(request, AssignRequest)
    subject_type, subject = _checked_subject(body.subjectType, body.subject)
    svc = services(request)
    async with svc.db.transaction() as conn:
        role = await _locked_role(conn, role_id)
        row = await conn.fetchrow(Q.kite_insert_assignment, role_id, subject_type, subject)
        if row is None:
            existing = await conn.fetchrow(Q.kite_find_assignment, role_id, subject_type, subject)
            assert existing is not None  # the role row lock keeps it from going away
            return json_model(AssignmentResponse(assignment=_assignment_out(existing)))
        message = f"assigned role {role['name']!r} to {subject_type} {subject!r}"
        await _changed(conn, request, action="assign", role_id=role_id, message=message)
    svc.authorizer.invalidate()
    return json_model(AssignmentResponse(assignment=_assignment_out(row)), status=201)


@routes.route(
    "DELETE",
    ROLE + "/assign",
    summary="Kite: remove a role from a user or group",
    response=SuccessResponse,
    auth="none",
    statuses=(400, 401, 403, 404),
    query=(("subjectType", "user | group"), ("subject", "the user or group")),
)
async def unassign_role(request: web.Request) -> web.Response:
    await _require_admin(request)
    role_id = _role_id(request)
    subject_type, subject = _checked_subject(
        request.query.get("subjectType", ""), request.query.get("subject", "")
    )
    svc = services(request)
    async with svc.db.transaction() as conn:
        role = await _locked_role(conn, role_id)
        if await conn.fetchrow(Q.kite_delete_assignment, role_id, subject_type, subject) is None:
            raise ApiError(404, "assignment not found")
        message = f"removed role {role['name']!r} from {subject_type} {subject!r}"
        await _changed(conn, request, action="unassign", role_id=role_id, message=message)
    svc.authorizer.invalidate()
    return json_model(SuccessResponse())
