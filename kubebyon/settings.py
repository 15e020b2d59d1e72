"""Process settings, read once from ``KUBEBYON_*`` environment variables.

Runtime settings that admins edit in the console (public_base_url, OAuth, Stripe, ...)
live in the ``system_settings`` table, not here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kubebyon.domain.clusters import RESOURCE_FIELDS as CLUSTER_RESOURCE_FIELDS
from kubebyon.domain.join_script import k3s_version_problem, server_url_problem
from kubebyon.domain.passwords import password_problem
from kubebyon.domain.validation import email_problem, normalize_email
from kubebyon.domain.vcluster_values import parse_values_file

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Control-plane images vCluster ships (ghcr.io/loft-sh/kubernetes tags, reference §3),
# plus the seed's example version.
DEFAULT_KUBERNETES_VERSIONS = ("v1.31.2", "v1.32.1", "v1.33.4", "v1.34.0", "v1.35.0", "v1.36.0")
_KUBERNETES_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")

# Names whose values never leave the process (``kubebyon config`` masks them).
SECRET_FIELDS = frozenset({"database_url", "secret_key", "bootstrap_admin_password"})


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def parse_http_addr(value: str) -> tuple[str, int]:
    """Split ``host:port``; the seed's ``:8080`` form means every interface."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT or :PORT, got {value!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - the seed's ":8080" binds all interfaces
    return host, port


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KUBEBYON_",
        extra="ignore",
        validate_default=True,
        frozen=True,
        env_ignore_empty=True,  # an empty variable means "unset", as operators expect
    )

    http_addr: str = "127.0.0.1:8080"
    database_url: SecretStr | None = None
    data_dir: Path = Path(".kubebyon")
    secret_key: SecretStr | None = None
    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: SecretStr | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Host Kubernetes and vCluster (seed).
    kubeconfig_path: Path | None = None
    vcluster_values_file: Path | None = None
    # vCluster 0.36.1 runs Kubernetes v1.36.0 unless a cluster asks for another version.
    vcluster_chart_repo: str = "https://charts.loft.sh"
    vcluster_chart_version: str = "0.36.1"
    managed_ingress_chart_version: str | None = None
    # Joining nodes (reference §7): the address machines reach the host k3s server at
    # (K3S_URL), and the k3s version their agent installs (unset: the host's own).
    host_api_url: str | None = None
    k3s_version: str | None = None

    # Console kubectl proxy (seed §3.7): the binary (unset: kubectl on PATH), how long one
    # command may run, and how much of each of stdout and stderr is kept.
    kubectl_path: Path | None = None
    kubectl_timeout_seconds: float = Field(30, gt=0)
    kubectl_max_output_bytes: int = Field(1024 * 1024, ge=1)

    # Node drain (console drain, and delete without force): how long evictions may be
    # refused (PodDisruptionBudgets) before the job fails leaving the node cordoned, and the
    # first wait before asking again (doubling, at most 8 times longer).
    node_drain_timeout_seconds: float = Field(600, gt=0)
    node_drain_retry_seconds: float = Field(5, gt=0)

    # Connection and control-plane metrics reconcilers.
    connection_probe_interval_seconds: float = Field(30, gt=0)
    control_plane_metrics_interval_seconds: float = Field(60, gt=0)
    control_plane_metrics_retention_days: int = Field(7, ge=1)
    # Node health: a joined node without a heartbeat for this long is offline.
    node_offline_grace_seconds: float = Field(600, gt=0)

    # What a console user may ask for when creating or updating a cluster.
    supported_kubernetes_versions: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_KUBERNETES_VERSIONS)
    )
    workload_cpu_limit_milli_cores_min: int = Field(100, ge=1)
    workload_cpu_limit_milli_cores_max: int = Field(64000, ge=1)
    workload_memory_limit_mib_min: int = Field(128, ge=1)
    workload_memory_limit_mib_max: int = Field(262144, ge=1)
    control_plane_cpu_request_milli_cores_min: int = Field(50, ge=1)
    control_plane_cpu_request_milli_cores_max: int = Field(8000, ge=1)
    control_plane_memory_request_mib_min: int = Field(128, ge=1)
    control_plane_memory_request_mib_max: int = Field(16384, ge=1)

    # Browser security and rate limits (seed defaults).
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxy_cidrs: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    join_rate_limit_window_seconds: float = Field(3, gt=0)
    join_rate_limit_burst: int = Field(5, ge=1)
    join_rate_limit_max_entries: int = Field(10000, ge=1)
    auth_rate_limit_window_seconds: float = Field(30, gt=0)
    auth_rate_limit_burst: int = Field(5, ge=1)
    auth_rate_limit_max_entries: int = Field(5000, ge=1)

    # Outbound base URLs: tests point these at local fakes.
    cloudflare_api_base_url: str = "https://api.cloudflare.com/client/v4"
    stripe_api_base_url: str = "https://api.stripe.com"
    slack_api_base_url: str = "https://slack.com/api"
    telegram_api_base_url: str = "https://api.telegram.org"
    hcaptcha_verify_url: str = "https://api.hcaptcha.com/siteverify"

    # bk-bcs credentials naming this machine (loopback) are refused (SSRF) unless an
    # operator runs the cluster agent and KubeBYON side by side on purpose.
    bcs_allow_loopback_server_addresses: bool = False

    # Sessions: sliding expiry after inactivity, capped by an absolute lifetime.
    session_idle_hours: float = Field(168, gt=0)
    session_max_hours: float = Field(720, gt=0)

    # Database pool and runtime tuning.
    db_pool_min_size: int = Field(2, ge=1)
    db_pool_max_size: int = Field(10, ge=1)
    lease_seconds: float = Field(30, gt=0)
    idle_poll_seconds: float = Field(2.0, gt=0)
    shutdown_grace_seconds: float = Field(20, ge=0)
    job_max_attempts: int = Field(5, ge=1)
    job_concurrency: int = Field(4, ge=1)
    http_shutdown_seconds: float = Field(10, ge=0)
    worker_id: str | None = None

    @field_validator("http_addr")
    @classmethod
    def _check_http_addr(cls, value: str) -> str:
        parse_http_addr(value)
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("cors_allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"origin {origin!r} must be '*' or start with http:// or https://")
        return [origin.rstrip("/") for origin in value]

    @field_validator("host_api_url")
    @classmethod
    def _check_host_api_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if problem := server_url_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("k3s_version")
    @classmethod
    def _check_k3s_version(cls, value: str | None) -> str | None:
        if value is not None and (problem := k3s_version_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("supported_kubernetes_versions", mode="before")
    @classmethod
    def _split_versions(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("supported_kubernetes_versions")
    @classmethod
    def _check_versions(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one version")
        for version in value:
            if not _KUBERNETES_VERSION.match(version):
                raise ValueError(f"{version!r} is not a version like v1.31.2")
        return value

    @field_validator("trusted_proxy_cidrs", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: Any) -> Any:
        networks = []
        for item in _split_csv(value):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network in CIDR form") from None
        return networks

    @field_validator("kubeconfig_path", "vcluster_values_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("vcluster_values_file")
    @classmethod
    def _values_mapping(cls, value: Path | None) -> Path | None:
        if value is not None:
            parse_values_file(value.read_text())
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("KUBEBYON_DB_POOL_MIN_SIZE must not exceed KUBEBYON_DB_POOL_MAX_SIZE")
        for name in CLUSTER_RESOURCE_FIELDS:
            if getattr(self, f"{name}_min") > getattr(self, f"{name}_max"):
                raise ValueError(
                    f"KUBEBYON_{name.upper()}_MIN must not exceed KUBEBYON_{name.upper()}_MAX"
                )
        email, password = self.bootstrap_admin_email, self.bootstrap_admin_password
        if (email is None) != (password is None):
            raise ValueError(
                "set both KUBEBYON_BOOTSTRAP_ADMIN_EMAIL and KUBEBYON_BOOTSTRAP_ADMIN_PASSWORD, "
                "or neither"
            )
        if email is not None and (problem := email_problem(email)):
            raise ValueError(f"KUBEBYON_BOOTSTRAP_ADMIN_EMAIL: {problem}")
        if password is not None and (problem := password_problem(password.get_secret_value())):
            raise ValueError(f"KUBEBYON_BOOTSTRAP_ADMIN_PASSWORD: {problem}")
        return self

    @field_validator("bootstrap_admin_email")
    @classmethod
    def _normalize_admin_email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else value

    @property
    def listen(self) -> tuple[str, int]:
        return parse_http_addr(self.http_addr)

    @property
    def cluster_resource_bounds(self) -> dict[str, tuple[int, int]]:
        return {
            name: (getattr(self, f"{name}_min"), getattr(self, f"{name}_max"))
            for name in CLUSTER_RESOURCE_FIELDS
        }

    def masked(self) -> dict[str, str]:
        """Effective configuration, variable name to value, with secrets masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_FIELDS:
                text = "(set, hidden)" if value is not None else "(unset)"
            elif value is None:
                text = "(unset)"
            elif isinstance(value, list):
                text = ",".join(str(v) for v in value)
            else:
                text = str(value)
            out[f"KUBEBYON_{name.upper()}"] = text
        return out


class ConfigurationError(Exception):
    """Raised with one human-readable line per invalid setting."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                lines.append(f"KUBEBYON_{str(err['loc'][0]).upper()}: {message}")
            else:  # a rule across several variables names them itself
                lines.append(message)
        raise ConfigurationError(lines) from None
