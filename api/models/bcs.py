"""Models of the bk-bcs user-manager dialect (seed 002). Field names are bk-bcs's.

Every answer is the envelope ``{result, code, message, data}``; unknown request fields
are ignored, as bcs-user-manager does. Rules beyond types (names, addresses, resources)
are checked by the routes so each error is one plain sentence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ResourceType = Literal["cluster", "namespace", "namespace_scoped", "storage"]
Action = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class BcsEnvelope(BaseModel):
    result: bool = True
    code: int = 0
    message: str = "success"


class BcsEmptyResponse(BcsEnvelope):
    data: None = None


class BcsUserOut(BaseModel):
    id: int
    name: str
    user_type: int = Field(description="1 admin, 2 saas, 3 plain")
    user_token: str = Field(description="32 characters [A-Za-z0-9]")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime


class BcsUserResponse(BcsEnvelope):
    data: BcsUserOut


class BcsClusterCreateRequest(BaseModel):
    cluster_id: str = Field(max_length=100)
    cluster_type: Literal["k8s", "mesos", "tke"]
    tke_cluster_id: str = Field(default="", max_length=100)
    tke_cluster_region: str = Field(default="", max_length=100)


class BcsClusterOut(BaseModel):
    id: str
    cluster_type: int = Field(description="1 k8s, 2 mesos, 3 tke")
    tke_cluster_id: str
    tke_cluster_region: str
    creator_id: int | None = Field(
        description="The bk-bcs user who registered it; null for a KubeBYON API key"
    )
    created_at: datetime


class BcsClusterResponse(BcsEnvelope):
    data: BcsClusterOut


class BcsRegisterTokenOut(BaseModel):
    id: int
    cluster_id: str
    token: str = Field(description="128 characters [A-Za-z0-9]")
    created_at: datetime


class BcsRegisterTokenResponse(BcsEnvelope):
    data: BcsRegisterTokenOut


class BcsCredentialsUpdateRequest(BaseModel):
    register_token: str = Field(max_length=256)
    server_addresses: str = Field(
        max_length=4096, description="https URLs of the API servers, separated by ';'"
    )
    cacert_data: str = Field(min_length=1, max_length=65536)
    user_token: str = Field(min_length=1, max_length=16384)


class BcsCredentialsEntry(BaseModel):
    server_addresses: str
    ca_cert_data: str
    user_token: str
    cluster_domain: str


class BcsCredentialsOut(BcsCredentialsEntry):
    id: int
    cluster_id: str
    created_at: datetime
    updated_at: datetime


class BcsCredentialsResponse(BcsEnvelope):
    data: BcsCredentialsOut


class BcsCredentialsListResponse(BcsEnvelope):
    data: dict[str, BcsCredentialsEntry] = Field(description="Keyed by cluster id")


class BcsPermission(BaseModel):
    user_name: str = Field(max_length=128)
    resource_type: ResourceType
    resource: str = Field(
        max_length=201,
        description="cluster, storage: a cluster id or *; namespace, namespace_scoped: "
        "<cluster id>/<namespace> (either part may be *) or *",
    )
    role: Literal["manager", "viewer"]


class BcsPermissionSpec(BaseModel):
    permissions: list[BcsPermission] = Field(min_length=1, max_length=1000)


class BcsPermissionsRequest(BaseModel):
    apiVersion: Literal["v1"]
    kind: Literal["permission", "permissions"]
    name: str = Field(default="", max_length=253)
    spec: BcsPermissionSpec


class BcsPermissionQuery(BaseModel):
    user_name: str = Field(max_length=128)
    resource_type: ResourceType


class BcsPermissionOut(BaseModel):
    resource_type: str
    resource: str
    role: str


class BcsPermissionListResponse(BcsEnvelope):
    data: list[BcsPermissionOut]


class BcsVerifyRequest(BaseModel):
    user_token: str = Field(max_length=64)
    resource_type: ResourceType
    resource: str = Field(max_length=201)
    action: Action


class BcsVerifyOut(BaseModel):
    allowed: bool
    message: str = Field(
        description='"" when allowed; otherwise "no permission", '
        '"usertoken [T] is invalid" or "usertoken [T] is expired"'
    )


class BcsVerifyResponse(BcsEnvelope):
    data: BcsVerifyOut
