"""Models of the console node endpoints: the snapshot (seed §2.4) and node events (§2.5)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

NodeStatus = Literal["pending", "ready", "not_ready", "unknown", "offline", "deleted"]


class NodeOut(BaseModel):
    id: str
    cluster_id: str
    name: str
    status: NodeStatus = Field(
        description="From the Ready condition (pending: none yet; unknown: the host stopped "
        "hearing from the node); offline: no heartbeat past KUBEBYON_NODE_OFFLINE_GRACE_SECONDS."
    )
    unschedulable: bool = Field(description="Cordoned: no new pods are scheduled on it.")
    internal_ip: str | None
    os_image: str | None
    kubelet_version: str | None
    container_runtime_version: str | None
    cpu_allocatable_milli_cores: int | None
    memory_allocatable_bytes: int | None
    ephemeral_storage_allocatable_bytes: int | None
    source: str = Field(description="host: a machine joined to the host cluster.")
    last_seen_at: datetime | None = Field(description="The node's last heartbeat.")
    ready_at: datetime | None = Field(description="When it last became ready.")
    offline_at: datetime | None = Field(description="When it last went offline.")
    created_at: datetime
    updated_at: datetime


class NodeResponse(BaseModel):
    node: NodeOut


class NodeListResponse(BaseModel):
    nodes: list[NodeOut]


class NodeEventOut(BaseModel):
    id: str
    cluster_id: str
    node_id: str
    node_name: str
    type: str = Field(
        description="joined (first seen), or the status it moved to: ready, not_ready, "
        "pending, unknown, offline, deleted."
    )
    old_status: str | None
    new_status: str | None
    message: str
    observed_at: datetime = Field(description="When KubeBYON observed the change.")


class NodeEventListResponse(BaseModel):
    events: list[NodeEventOut]
