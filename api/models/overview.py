"""Model of the console overview: what the caller may see, counted, and recent activity."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.models.activities import ActivityOut


class StatusCounts(BaseModel):
    total: int
    by_status: dict[str, int] = Field(description="Every status not deleted, zeros included.")


class TokenCounts(BaseModel):
    active: int = Field(description="Join tokens that can still be used.")


class OverviewResponse(BaseModel):
    clusters: StatusCounts
    nodes: StatusCounts
    tokens: TokenCounts
    activities: list[ActivityOut] = Field(
        description="Recent activity from the audit stream: the caller's own (as "
        "/api/console/activities), every user's for platform admins."
    )
