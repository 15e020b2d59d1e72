"""Models of the admin user management endpoints (seed: Admin Users)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.models.auth import StrictModel

UserStatus = Literal["active", "banned", "deleted"]


class UserListQuery(StrictModel):
    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(20, ge=1, le=100)
    q: str | None = Field(None, max_length=254, description="email substring")
    status: UserStatus | None = None


class LoginHistoryQuery(StrictModel):
    limit: int = Field(50, ge=1, le=500)


class AdminUserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: Literal["admin", "user"]
    status: UserStatus
    created_at: datetime
    last_login_at: datetime | None


class AdminUserList(BaseModel):
    users: list[AdminUserOut]
    total: int
    page: int
    page_size: int


class AdminUserResponse(BaseModel):
    user: AdminUserOut


class UserStatusUpdate(StrictModel):
    status: Literal["active", "banned"]


class LoginHistoryEntry(BaseModel):
    at: datetime
    ip: str | None
    user_agent: str | None
    method: str
    result: str


class LoginHistoryResponse(BaseModel):
    entries: list[LoginHistoryEntry]
