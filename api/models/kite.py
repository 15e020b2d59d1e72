"""Models of the Kite RBAC dialect (seed 003). Field names are Kite's, camelCase."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class KiteRequest(BaseModel):
    # Kite clients may send a role back as they read it (id, isSystem, assignments, ...);
    # unknown fields are ignored, as Kite does. Rules beyond types are checked by the
    # routes so that each error is one plain sentence.
    model_config = ConfigDict(extra="ignore")


class RoleRequest(KiteRequest):
    name: str = Field(default="", max_length=100)
    description: str = Field(default="", max_length=1000)
    clusters: list[str] = Field(default_factory=list, description="Patterns: name, *, glob, !name")
    namespaces: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    verbs: list[str] = Field(
        default_factory=list,
        description="get, list, create, update, delete, log, exec or *; !verb denies",
    )


class AssignRequest(KiteRequest):
    subjectType: str = Field(default="", description="user | group")
    subject: str = Field(
        default="", max_length=255, description="A user (account id or email) or a group"
    )


class AssignmentOut(BaseModel):
    id: int
    roleId: int
    subjectType: Literal["user", "group"]
    subject: str
    createdAt: datetime


class RoleOut(BaseModel):
    id: int
    name: str
    description: str
    isSystem: bool
    clusters: list[str]
    namespaces: list[str]
    resources: list[str]
    verbs: list[str]
    assignments: list[AssignmentOut]
    createdAt: datetime
    updatedAt: datetime


class RoleListResponse(BaseModel):
    roles: list[RoleOut]


class RoleResponse(BaseModel):
    role: RoleOut


class AssignmentResponse(BaseModel):
    assignment: AssignmentOut


class SuccessResponse(BaseModel):
    success: bool = True
