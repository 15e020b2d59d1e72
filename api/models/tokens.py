"""Models of the join-token endpoints (seed §2.3, §3.6, §3.8). The value and the join
command appear only in the creation response."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kubebyon.domain.join_tokens import TTL_DEFAULT_SECONDS, TTL_MAX_SECONDS, TTL_MIN_SECONDS

TokenStatus = Literal["active", "used", "expired", "revoked"]


class JoinTokenCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ttl_seconds: int | None = Field(
        default=None,
        description=f"Lifetime in seconds, {TTL_MIN_SECONDS} (10 minutes) to {TTL_MAX_SECONDS} "
        f"(7 days). Default: {TTL_DEFAULT_SECONDS}. The body may be omitted.",
    )


class CreatedJoinToken(BaseModel):
    id: str
    cluster_id: str
    value: str = Field(description="The token. Shown only in this response; store it now.")
    join_command: str = Field(
        description="The one line to run on the machine that should join (as root)."
    )
    display_prefix: str = Field(description="The first characters of the value.")
    status: TokenStatus
    bootstrap_secret_name: str = Field(description="The host's kube-system Secret it becomes.")
    expires_at: datetime
    created_at: datetime


class JoinTokenCreatedResponse(BaseModel):
    token: CreatedJoinToken


class JoinTokenOut(BaseModel):
    """Lifecycle metadata: never the value."""

    id: str
    cluster_id: str
    display_prefix: str
    status: TokenStatus
    created_by_user_id: str | None
    used_by_node_id: str | None
    bootstrap_secret_name: str
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    revoked_by_user_id: str | None


class JoinTokenResponse(BaseModel):
    token: JoinTokenOut
