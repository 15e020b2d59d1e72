"""Audit events, written in the transaction of the change they describe.

Messages and fields hold low-sensitivity identifiers only (ids, names, emails of the
actor); never a password, code, token, key, session id, kubeconfig or OAuth subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubebyon.db.database import Conn
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.ids import new_id


@dataclass(frozen=True)
class Actor:
    user_id: str | None
    type: str  # user | admin | system | anonymous
    method: str  # session | api_key | oauth | password | system
    ip: str | None = None


SYSTEM = Actor(None, "system", "system")


async def record(
    conn: Conn,
    actor: Actor,
    *,
    resource_type: str,
    action: str,
    message: str,
    resource_id: str | None = None,
    result: str = "success",
    cluster_id: str | None = None,
    cluster_name: str | None = None,
    node_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    event_id = new_id("evt")
    await conn.execute(
        Q.insert_audit_event,
        event_id,
        actor.user_id,
        actor.type,
        actor.method,
        resource_type,
        resource_id,
        action,
        result,
        message,
        cluster_id,
        cluster_name,
        node_name,
        actor.ip,
        extra or {},
    )
    return event_id
