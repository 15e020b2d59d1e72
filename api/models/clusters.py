"""Models of the console cluster endpoints (seed §2.1, §2.6, §2.7, §3.1, §3.2, §3.5)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models.auth import StrictModel

Status = Literal["provisioning", "ready", "error", "deleting", "deleted"]
ConnectionStatus = Literal["pending", "kubeconfig_pending", "reachable", "unreachable", "error"]
PublicAccessMode = Literal["nodeport", "loadbalancer"]
IngressStatus = Literal["disabled", "provisioning", "ready", "error"]
IngressDnsStatus = Literal["not_managed", "pending", "synced", "error"]
JobStatus = Literal["pending", "running", "succeeded", "failed"]


class _Request(BaseModel):
    # Unknown fields are refused by name; no "2000" for 2000 or 1 for true.
    model_config = ConfigDict(extra="forbid", strict=True)


class ClusterCreateRequest(_Request):
    name: str = Field(description="DNS-1123 label, at most 63 characters.")
    vcluster_name: str | None = Field(
        default=None,
        description="DNS-1123 label starting with a letter, at most 50 characters "
        "(helm-install-<name> must fit 63); unique among clusters not deleted. Default: name.",
    )
    namespace: str | None = Field(
        default=None,
        description="Host namespace: must equal vcluster_name. Default: vcluster_name.",
    )
    control_plane_host: str | None = Field(
        default=None, description="Host name or IP address the control plane is reached at."
    )
    kubernetes_version: str = Field(description="One of KUBEBYON_SUPPORTED_KUBERNETES_VERSIONS.")
    workload_cpu_limit_milli_cores: int
    workload_memory_limit_mib: int
    control_plane_cpu_request_milli_cores: int
    control_plane_memory_request_mib: int
    public_access_enabled: bool | None = Field(
        default=None,
        description="Default: true when control_plane_host is given (published as a NodePort).",
    )
    public_access_mode: PublicAccessMode = "nodeport"
    managed_workload_ingress_enabled: bool = False


class ClusterUpdateRequest(_Request):
    """Seed §3.2: only these fields; a field left out stays as it is."""

    workload_cpu_limit_milli_cores: int | None = None
    workload_memory_limit_mib: int | None = None
    control_plane_cpu_request_milli_cores: int | None = None
    control_plane_memory_request_mib: int | None = None
    public_access_enabled: bool | None = None
    public_access_mode: PublicAccessMode | None = None
    control_plane_host: str | None = Field(default=None, description="null removes it.")
    managed_workload_ingress_enabled: bool | None = None


class ClusterOut(BaseModel):
    id: str
    owner_user_id: str | None
    backend: Literal["vcluster", "imported"]
    name: str
    namespace: str
    vcluster_name: str
    control_plane_host: str | None
    kubernetes_version: str
    workload_cpu_limit_milli_cores: int
    workload_memory_limit_mib: int
    control_plane_cpu_request_milli_cores: int
    control_plane_memory_request_mib: int
    public_access_enabled: bool
    public_access_mode: PublicAccessMode
    public_access_port: int | None
    managed_workload_ingress_enabled: bool
    managed_workload_ingress_status: IngressStatus
    managed_workload_ingress_class: str | None
    managed_workload_ingress_last_error: str | None
    managed_workload_ingress_cname_target: str | None = Field(
        description="<vcluster_name>-<last 8 characters of id>.<managed_workload_ingress_base_"
        "domain>; null while the admin has not set a valid base domain."
    )
    managed_workload_ingress_dns_status: IngressDnsStatus
    managed_workload_ingress_dns_message: str | None
    managed_workload_ingress_dns_last_synced_at: datetime | None
    managed_workload_ingress_dns_last_error: str | None
    managed_workload_ingress_dns_last_error_at: datetime | None
    api_endpoint: str | None
    status: Status
    connection_status: ConnectionStatus
    kubeconfig_available: bool
    kubeconfig_available_at: datetime | None
    last_observed_at: datetime | None
    last_error_message: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class ClusterResponse(BaseModel):
    cluster: ClusterOut


class ClusterListResponse(BaseModel):
    clusters: list[ClusterOut]


class OperationOut(BaseModel):
    id: str
    cluster_id: str
    type: str
    status: JobStatus
    stage: str
    requested_by_user_id: str | None
    error_message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class JobOut(BaseModel):
    id: str
    cluster_id: str
    operation_id: str | None
    type: str
    status: JobStatus
    attempt_count: int
    published_at: datetime
    leased_until: datetime | None
    worker_id: str | None
    last_error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class OperationsResponse(BaseModel):
    operations: list[OperationOut]
    jobs: list[JobOut]


class JobListResponse(BaseModel):
    jobs: list[JobOut]


class KubeconfigRequest(StrictModel):
    password: str = Field(min_length=1, max_length=1024, description="The caller's password.")


class KubeconfigResponse(BaseModel):
    api_endpoint: str | None
    kubeconfig: str
    version: str


class MetricPoint(BaseModel):
    at: datetime
    cpu_millicores: float | None
    memory_bytes: float | None
    api_latency_ms: float | None
    availability: float | None = Field(description="0-1: share of probes that reached the API.")


class MetricsHistoryResponse(BaseModel):
    window: Literal["1h", "6h", "24h", "7d"]
    points: list[MetricPoint]
