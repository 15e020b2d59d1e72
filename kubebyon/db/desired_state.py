"""Writes that change desired state, meant to run inside the caller's transaction.

Every API write that changes what a reconciler must converge calls ``wake`` in the same
transaction: the key becomes due and the NOTIFY reaches every process at commit.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from kubebyon.db.database import Conn
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.ids import new_id


async def wake(conn: Conn, reconciler: str, key: str) -> None:
    await conn.execute(Q.enqueue_key, reconciler, key)


async def enqueue_operation(
    conn: Conn,
    *,
    cluster_id: str,
    operation_type: str,
    requested_by_user_id: str | None,
    payload: dict[str, Any] | None = None,
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Record a cluster operation and the job that carries it out (seed §2.6)."""
    operation = await conn.fetchrow(
        Q.insert_operation, new_id("op"), cluster_id, operation_type, requested_by_user_id
    )
    assert operation is not None
    job = await conn.fetchrow(
        Q.insert_job,
        new_id("job"),
        cluster_id,
        operation["id"],
        operation_type,
        payload or {},
    )
    assert job is not None
    return operation, job
