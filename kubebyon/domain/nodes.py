"""Node health (seed §2.4, §2.5): what a host Node object says about a joined machine,
the snapshot KubeBYON keeps of it, and the events a change of status makes.

Pure: the node reconciler hands in the Node's JSON, the stored snapshot and the time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from kubebyon.domain.labels import CLUSTER_LABEL, JOIN_TOKEN_LABEL
from kubebyon.domain.validation import bounded_limit

AUTHZ_RESOURCE = "nodes"  # the authorization engine's resource for a cluster's nodes

# Seed §2.4: pending (no Ready condition yet), ready, not_ready, unknown (Ready is
# Unknown: the host's node controller stopped hearing from the kubelet); ours: offline
# (no heartbeat past the grace) and deleted (gone from the host).
LIVE_STATUSES = ("pending", "ready", "not_ready", "unknown", "offline")
STATUSES = (*LIVE_STATUSES, "deleted")
EVENT_TYPES = ("joined", *STATUSES)  # an event's type is the status it moved to, or joined
_READY = {"True": "ready", "False": "not_ready", "Unknown": "unknown"}

EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX = 100, 500

# Kubernetes resource.Quantity suffixes (apimachinery/pkg/api/resource).
_SUFFIXES: dict[str, Decimal | int] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<suffix>[numkMGTPE]|[KMGTPE]i)|[eE](?P<exponent>[+-]?\d+))?$"
)


def parse_quantity(text: Any) -> Decimal | None:
    """A Kubernetes quantity ("1500m", "4Gi", "4096Ki", "1e3", "2"), or None."""
    if not isinstance(text, str):
        return None
    match = _QUANTITY.match(text.strip())
    if match is None:
        return None
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        return None
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"]))
    return number * _SUFFIXES[match["suffix"] or ""]


def millicores(text: Any) -> int | None:
    """CPU as millicores ("2" → 2000, "1500m" → 1500), rounded up like Kubernetes."""
    quantity = parse_quantity(text)
    return None if quantity is None or quantity < 0 else math.ceil(quantity * 1000)


def byte_count(text: Any) -> int | None:
    """Memory or storage in bytes ("4Gi" → 4294967296, "4096Ki" → 4194304)."""
    quantity = parse_quantity(text)
    return None if quantity is None or quantity < 0 else math.ceil(quantity)


def _timestamp(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class HostNode:
    """What one host Node object says, parsed."""

    name: str
    uid: str | None
    cluster_id: str | None
    join_token_id: str | None
    ready: str | None  # the Ready condition's status: True, False, Unknown; None: none yet
    heartbeat_at: datetime | None  # the Ready condition's lastHeartbeatTime
    ready_since: datetime | None  # the Ready condition's lastTransitionTime
    unschedulable: bool
    internal_ip: str | None
    os_image: str | None
    kubelet_version: str | None
    container_runtime_version: str | None
    cpu_allocatable_milli_cores: int | None
    memory_allocatable_bytes: int | None
    ephemeral_storage_allocatable_bytes: int | None


def host_node(obj: Mapping[str, Any]) -> HostNode:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = obj.get("status") or {}
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    info = status.get("nodeInfo") or {}
    allocatable = status.get("allocatable") or {}
    internal_ip = next(
        (a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"),
        None,
    )
    return HostNode(
        name=meta["name"],
        uid=_text(meta.get("uid")),
        cluster_id=_text(labels.get(CLUSTER_LABEL)),
        join_token_id=_text(labels.get(JOIN_TOKEN_LABEL)),
        ready=ready.get("status") if ready is not None else None,
        heartbeat_at=_timestamp(ready.get("lastHeartbeatTime")) if ready is not None else None,
        ready_since=_timestamp(ready.get("lastTransitionTime")) if ready is not None else None,
        unschedulable=bool((obj.get("spec") or {}).get("unschedulable")),
        internal_ip=_text(internal_ip),
        os_image=_text(info.get("osImage")),
        kubelet_version=_text(info.get("kubeletVersion")),
        container_runtime_version=_text(info.get("containerRuntimeVersion")),
        cpu_allocatable_milli_cores=millicores(allocatable.get("cpu")),
        memory_allocatable_bytes=byte_count(allocatable.get("memory")),
        ephemeral_storage_allocatable_bytes=byte_count(allocatable.get("ephemeral-storage")),
    )


def reported_status(ready: str | None) -> str:
    """The status the Ready condition reports: pending until there is one."""
    if ready is None:
        return "pending"
    return _READY.get(ready, "unknown")


def is_stale(last_seen_at: datetime | None, now: datetime, grace: float) -> bool:
    return last_seen_at is not None and last_seen_at < now - timedelta(seconds=grace)


@dataclass(frozen=True)
class Snapshot:
    """The observed columns of a ``nodes`` row."""

    status: str
    host_uid: str | None
    unschedulable: bool
    internal_ip: str | None
    os_image: str | None
    kubelet_version: str | None
    container_runtime_version: str | None
    cpu_allocatable_milli_cores: int | None
    memory_allocatable_bytes: int | None
    ephemeral_storage_allocatable_bytes: int | None
    last_seen_at: datetime | None
    ready_at: datetime | None
    offline_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> Snapshot:
        """From a ``nodes`` row (any mapping of column names)."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def next_snapshot(
    previous: Snapshot | None, node: HostNode, now: datetime, grace: float
) -> Snapshot:
    """The snapshot after observing ``node`` at ``now``. ``last_seen_at`` is the Ready
    condition's heartbeat (the observation time while there is none) and never goes
    back; a node whose last heartbeat is older than ``grace`` seconds is offline
    whatever its Ready condition still says."""
    seen = node.heartbeat_at or now
    if previous is not None and previous.last_seen_at is not None:
        seen = max(seen, previous.last_seen_at)
    status = "offline" if is_stale(seen, now, grace) else reported_status(node.ready)
    old = previous.status if previous is not None else None
    ready_at = previous.ready_at if previous is not None else None
    offline_at = previous.offline_at if previous is not None else None
    if status == "ready" and old != "ready":
        ready_at = node.ready_since or now
    if status == "offline" and old != "offline":
        offline_at = now
    return Snapshot(
        status=status,
        host_uid=node.uid,
        unschedulable=node.unschedulable,
        internal_ip=node.internal_ip,
        os_image=node.os_image,
        kubelet_version=node.kubelet_version,
        container_runtime_version=node.container_runtime_version,
        cpu_allocatable_milli_cores=node.cpu_allocatable_milli_cores,
        memory_allocatable_bytes=node.memory_allocatable_bytes,
        ephemeral_storage_allocatable_bytes=node.ephemeral_storage_allocatable_bytes,
        last_seen_at=seen,
        ready_at=ready_at,
        offline_at=offline_at,
    )


@dataclass(frozen=True)
class NodeEvent:
    type: str
    old_status: str | None
    new_status: str | None
    message: str


def status_event(
    old: str | None, new: str, *, last_seen_at: datetime | None = None, grace: float = 0
) -> NodeEvent | None:
    """The event for a change of status (``old`` None: the node was first seen), or None
    when the status stayed."""
    if old is None:
        return NodeEvent("joined", None, new, f"Node joined with status {new}")
    if old == new:
        return None
    if new == "pending":
        message = "Node has no Ready condition yet"
    elif new == "offline":
        since = f" since {last_seen_at.isoformat()}" if last_seen_at is not None else ""
        message = f"No heartbeat from the node{since} (grace {grace:g}s)"
    elif new == "deleted":
        message = "Node removed from the host cluster"
    else:
        condition = next(k for k, v in _READY.items() if v == new)
        message = f"Node condition Ready changed to {condition}"
    return NodeEvent(new, old, new, message)


def events_limit(raw: str | None) -> int:
    """Seed §2.5: default 100, at most 500 (larger values are capped); invalid → 100."""
    return bounded_limit(raw, default=EVENTS_LIMIT_DEFAULT, maximum=EVENTS_LIMIT_MAX)
