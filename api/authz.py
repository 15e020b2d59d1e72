"""Authorization of console routes that touch a cluster, a node, a join token or a
hostname, through the one engine (kubebyon/domain/authz.py, cached by
kubebyon/db/authz.py).

Platform admins always pass, and a user always has full rights on the clusters they own;
anyone else needs an assigned role that allows the access. ``cluster`` is the cluster's
id, which is unique across users (two users may both name a cluster "demo", so a name
would leak one user's grant onto the other's cluster). A refusal never reveals that an
object exists: 404, with the message the route gives for an unknown id, unless the
caller may read the object (then 403 for what it may not do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from aiohttp import web

from api.auth import Principal, require
from api.errors import ApiError
from api.state import services
from kubebyon.domain.authz import Access

READ = "get"  # reading an object and seeing it in a list (Kite checks "get" for both)
T = TypeVar("T")


async def _allows(
    request: web.Request,
    principal: Principal,
    owner_id: str | None,
    access: Access,
) -> bool:
    if principal.is_admin or (owner_id is not None and owner_id == principal.user_id):
        return True
    authorizer = services(request).authorizer
    return await authorizer.allowed(principal.subjects, principal.user_id, access)


async def authorize(
    request: web.Request,
    *,
    cluster: str,
    namespace: str = "*",
    resource: str,
    verb: str,
    owner_id: str | None,
    not_found: str = "not found",
) -> None:
    """Return when the caller may ``verb`` the ``resource`` of ``cluster`` (owned by
    ``owner_id``); otherwise raise 404 ``not_found`` (403 if it may at least read it).
    Anonymous callers get 401."""
    principal = require(request)
    access = Access(cluster, namespace, resource, verb)
    if await _allows(request, principal, owner_id, access):
        return
    if verb != READ and await _allows(
        request, principal, owner_id, Access(cluster, namespace, resource, READ)
    ):
        raise ApiError(403, f"not allowed to {verb} {resource} here", "forbidden")
    raise ApiError(404, not_found, "not_found")


async def visible(
    request: web.Request,
    items: Iterable[T],
    *,
    resource: str,
    cluster_of: Callable[[T], str],
    owner_of: Callable[[T], str | None],
    namespace: str = "*",
) -> list[T]:
    """The items of a list the caller may read, in their order. Filter before paginating:
    a page cut first would come back short."""
    principal = require(request)
    if principal.is_admin:
        return list(items)
    return [
        item
        for item in items
        if await _allows(
            request, principal, owner_of(item), Access(cluster_of(item), namespace, resource, READ)
        )
    ]
