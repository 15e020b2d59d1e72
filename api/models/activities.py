"""Models of the activity stream (seed §2.6 and §3.10), read from ``audit_events``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ActivityOut(BaseModel):
    id: str
    type: str = Field(description="resource_type and action joined, e.g. session_login.")
    message: str
    cluster_id: str | None
    cluster_name: str | None
    node_name: str | None
    occurred_at: datetime
    relative_time: str


class AdminActivityOut(ActivityOut):
    actor_user_id: str | None
    actor_type: str
    actor_method: str
    resource_type: str
    resource_id: str | None
    action: str
    result: str


class ActivityListResponse(BaseModel):
    activities: list[ActivityOut]


class AdminActivityListResponse(BaseModel):
    activities: list[AdminActivityOut]
