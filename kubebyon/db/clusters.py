"""Desired-state writes of clusters (seed §3.1, §3.2, §3.4), each in ONE transaction.

A write changes the cluster row (and its ``generation``), records the operation and the
job that carries it out (payload ``{"generation": N}``: the generation it was written
for), wakes the vcluster reconciler for the cluster and writes the ``*_requested`` audit
event. The caller holds the transaction: if any step fails, none of it happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from kubebyon.db import audit
from kubebyon.db.audit import Actor
from kubebyon.db.database import Conn
from kubebyon.db.desired_state import enqueue_operation, wake
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain import clusters as rules
from kubebyon.domain.ids import new_id

RECONCILER = "vcluster"


class VclusterNameTaken(Exception):
    """Another cluster not yet deleted uses this vcluster_name (and host namespace)."""


async def _requested(
    conn: Conn,
    cluster: asyncpg.Record,
    actor: Actor,
    *,
    operation: str,
    action: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> None:
    await enqueue_operation(
        conn,
        cluster_id=cluster["id"],
        operation_type=operation,
        requested_by_user_id=actor.user_id,
        payload={"generation": cluster["generation"]},
    )
    await wake(conn, RECONCILER, cluster["id"])
    await audit.record(
        conn,
        actor,
        resource_type="cluster",
        action=action,
        message=message,
        resource_id=cluster["id"],
        cluster_id=cluster["id"],
        cluster_name=cluster["name"],
        extra={"generation": cluster["generation"], **(extra or {})},
    )


async def create(
    conn: Conn, spec: Mapping[str, Any], *, owner_user_id: str, actor: Actor
) -> asyncpg.Record:
    """``spec`` has passed ``domain.clusters.create_problems``. The cluster starts as
    status provisioning, connection_status pending (column defaults)."""
    try:
        cluster = await conn.fetchrow(
            Q.insert_cluster,
            new_id("cl"),
            owner_user_id,
            spec["name"],
            spec["vcluster_name"],  # namespace: always vcluster_name (seed §3.1)
            spec["vcluster_name"],
            spec.get("control_plane_host"),
            spec["kubernetes_version"],
            *(spec[name] for name in rules.RESOURCE_FIELDS),
            spec.get("public_access_enabled", False),
            spec.get("public_access_mode", "nodeport"),
            spec.get("managed_workload_ingress_enabled", False),
        )
    except asyncpg.UniqueViolationError:  # the transaction is aborted: the caller's 409
        raise VclusterNameTaken(spec["vcluster_name"]) from None
    assert cluster is not None
    await _requested(
        conn,
        cluster,
        actor,
        operation=rules.CREATE,
        action="create_requested",
        message=f"Creation of cluster {cluster['name']} requested "
        f"(vCluster {cluster['vcluster_name']}, Kubernetes {cluster['kubernetes_version']})",
    )
    return cluster


async def update(
    conn: Conn, current: asyncpg.Record, changes: Mapping[str, Any], *, actor: Actor
) -> asyncpg.Record:
    """Apply the §3.2 ``changes`` to ``current`` (locked by the caller, not deleting)."""
    wanted = {name: changes.get(name, current[name]) for name in rules.UPDATABLE_FIELDS}
    cluster = await conn.fetchrow(
        Q.update_cluster_spec,
        current["id"],
        *(wanted[name] for name in rules.RESOURCE_FIELDS),
        wanted["public_access_enabled"],
        wanted["public_access_mode"],
        wanted["control_plane_host"],
        wanted["managed_workload_ingress_enabled"],
    )
    assert cluster is not None
    await _requested(
        conn,
        cluster,
        actor,
        operation=rules.UPDATE,
        action="settings_update_requested",
        message=f"Settings update of cluster {cluster['name']} requested "
        f"({', '.join(sorted(changes))})",
        extra={"changes": dict(changes)},
    )
    return cluster


async def request_deletion(conn: Conn, current: asyncpg.Record, *, actor: Actor) -> asyncpg.Record:
    """Seed §3.4: ``deleting`` now; the vcluster side sets ``deleted`` and ``deleted_at``
    once the host resources are gone."""
    cluster = await conn.fetchrow(Q.mark_cluster_deleting, current["id"])
    assert cluster is not None
    await _requested(
        conn,
        cluster,
        actor,
        operation=rules.DELETE,
        action="delete_requested",
        message=f"Deletion of cluster {cluster['name']} requested",
    )
    return cluster


async def delete_all_of_owner(conn: Conn, owner_user_id: str, *, actor: Actor) -> int:
    """Account deletion sends every cluster of the account down the deletion path."""
    clusters = await conn.fetch(Q.lock_clusters_to_delete_of_owner, owner_user_id)
    for cluster in clusters:
        await request_deletion(conn, cluster, actor=actor)
    return len(clusters)
