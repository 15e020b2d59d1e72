"""Models of the operational endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, dict[str, Any]] = Field(
        description="Per component: database, reconcilers, host_cluster."
    )
