"""``admission.k8s.io/v1`` AdmissionReview, as the host's API server sends and reads it.

Only the fields KubeBYON reads are declared; the API server sends more (userInfo,
oldObject, options, dryRun, ...), which are ignored.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, Field

API_VERSION: Final = "admission.k8s.io/v1"


class GroupVersionKind(BaseModel):
    group: str = ""
    version: str
    kind: str


class GroupVersionResource(BaseModel):
    group: str = ""
    version: str
    resource: str


class AdmissionRequest(BaseModel):
    uid: str = Field(min_length=1, description="Copied into response.uid.")
    kind: GroupVersionKind
    resource: GroupVersionResource
    name: str = ""
    namespace: str = ""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    object: dict[str, Any] | None = None


class AdmissionReviewRequest(BaseModel):
    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class AdmissionStatus(BaseModel):
    code: int
    message: str


class AdmissionResponse(BaseModel):
    uid: str
    allowed: bool
    status: AdmissionStatus | None = None
    patchType: Literal["JSONPatch"] | None = None
    patch: str | None = Field(None, description="Base64 of the JSONPatch operations.")


class AdmissionReviewResponse(BaseModel):
    apiVersion: Literal["admission.k8s.io/v1"] = API_VERSION
    kind: Literal["AdmissionReview"] = "AdmissionReview"
    response: AdmissionResponse
