"""Models of the authentication endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from asyncpg import Record
from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class LoginRequest(StrictModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    captcha_token: str | None = Field(default=None, max_length=4096)


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: Literal["admin", "user"]
    status: Literal["active", "banned", "deleted"]
    timezone: str = "UTC"
    locale: str = "en"
    has_avatar: bool = False
    avatar_updated_at: datetime | None = None
    email_verified_at: datetime | None = None
    last_login_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class UserResponse(BaseModel):
    user: UserOut


class OkResponse(BaseModel):
    ok: bool = True


def user_out(row: Record) -> UserOut:
    return UserOut(
        id=row["id"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        status=row["status"],
        timezone=row["timezone"],
        locale=row["locale"],
        has_avatar=row["avatar"] is not None,
        avatar_updated_at=row["avatar_updated_at"],
        email_verified_at=row["email_verified_at"],
        last_login_at=row["last_login_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
