"""What one cluster looks like on the host: vCluster Helm values, quota, API endpoint.

Pure rules, no I/O. Keys follow the vCluster chart (loft-sh/vcluster v0.36.1
``chart/values.yaml``) and ``../shared/reference/vcluster-and-join.md``:

- Node model (reference §7): the vCluster syncs only the host nodes labelled
  ``kubebyon.io/cluster-id=<id>`` (``sync.fromHost.nodes.selector.labels``, which also
  becomes the node selector of every synced pod) and gives every synced pod the
  toleration for the matching ``NoSchedule`` taint (``sync.toHost.pods.enforceTolerations``).
- Kubernetes version: ``controlPlane.distro.k8s.version`` (wins over ``image.tag``, §3).
- Public access: off → ``ClusterIP``, reachable only inside the host cluster at
  ``https://<vcluster_name>.<namespace>.svc:443``; ``nodeport`` → ``NodePort`` with
  ``controlPlane.service.httpsNodePort`` (``https://<control_plane_host>:<node port>``);
  ``loadbalancer`` → ``LoadBalancer`` (``https://<control_plane_host>:443``).
- The exported kubeconfig points at that endpoint (``exportKubeConfig.server``; the
  default is ``https://localhost:8443``, §2) and the endpoint's host is a certificate SAN
  (``controlPlane.proxy.extraSANs``).
- Quota: KubeBYON writes its own ResourceQuota and LimitRange and turns the chart's
  ``policies`` off, so there is exactly one of each — and the chart's default quota, which
  forbids NodePorts (``services.nodeports: 0``, §3), never applies.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from kubebyon.domain.clusters import (
    PUBLIC_ACCESS_MODES,
    RESOURCE_FIELDS,
    host_problem,
    vcluster_name_problem,
)
from kubebyon.domain.labels import CLUSTER_LABEL

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubebyon"
QUOTA_NAME = "kubebyon-workloads"
LIMIT_RANGE_NAME = "kubebyon-defaults"
HTTPS_PORT = 443
# Containers without requests get these (the LimitRange), so that they are admitted
# under the requests quota. The helm install/upgrade job pod is one of them.
DEFAULT_CPU_REQUEST_MILLI = 100
DEFAULT_MEMORY_REQUEST_MIB = 128
_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")


class InvalidClusterSpec(ValueError):
    """The desired state cannot be installed; the message tells the user what to change."""


@dataclass(frozen=True)
class ClusterSpec:
    """The desired-state fields of a cluster that shape its host objects."""

    id: str
    vcluster_name: str
    namespace: str
    kubernetes_version: str
    control_plane_host: str | None
    control_plane_cpu_request_milli_cores: int
    control_plane_memory_request_mib: int
    workload_cpu_limit_milli_cores: int
    workload_memory_limit_mib: int
    public_access_enabled: bool
    public_access_mode: str
    public_access_port: int | None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> ClusterSpec:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def check(spec: ClusterSpec) -> None:
    """Raise InvalidClusterSpec naming the field to change. The API checks each field on
    its way in; this also catches combinations (public access without a host) and rows
    written by other means."""
    if problem := vcluster_name_problem(spec.vcluster_name):
        raise InvalidClusterSpec(f"vcluster_name {spec.vcluster_name!r} {problem}")
    if spec.namespace != spec.vcluster_name:
        raise InvalidClusterSpec(
            f"namespace {spec.namespace!r} must equal vcluster_name {spec.vcluster_name!r} "
            "(each vCluster has a host namespace of its own name)"
        )
    if not _VERSION.match(spec.kubernetes_version):
        raise InvalidClusterSpec(
            f"kubernetes_version {spec.kubernetes_version!r} must look like v1.36.0"
        )
    for field in RESOURCE_FIELDS:
        if (value := getattr(spec, field)) <= 0:
            raise InvalidClusterSpec(f"{field} must be a positive number, got {value}")
    if spec.public_access_mode not in PUBLIC_ACCESS_MODES:
        raise InvalidClusterSpec(
            f"public_access_mode must be one of {', '.join(PUBLIC_ACCESS_MODES)}"
        )
    if spec.public_access_port is not None and not 1 <= spec.public_access_port <= 65535:
        raise InvalidClusterSpec(
            f"public_access_port {spec.public_access_port} is not a port (1-65535)"
        )
    host = spec.control_plane_host
    if host and (problem := host_problem(host)):
        raise InvalidClusterSpec(f"control_plane_host {host!r} {problem}")
    if spec.public_access_enabled and not host:
        raise InvalidClusterSpec(
            "public access needs control_plane_host: set it to the address (host name or "
            "IP) where the host cluster's nodes are reachable, or turn public access off"
        )


def service_type(spec: ClusterSpec) -> str:
    if not spec.public_access_enabled:
        return "ClusterIP"
    return "LoadBalancer" if spec.public_access_mode == "loadbalancer" else "NodePort"


def in_cluster_host(spec: ClusterSpec) -> str:
    return f"{spec.vcluster_name}.{spec.namespace}.svc"


def api_endpoint(spec: ClusterSpec) -> str | None:
    """``https://<host>:<port>``; None while a NodePort chosen by Kubernetes is unknown."""
    kind = service_type(spec)
    if kind == "ClusterIP":
        return f"https://{in_cluster_host(spec)}:{HTTPS_PORT}"
    assert spec.control_plane_host
    host = spec.control_plane_host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if kind == "LoadBalancer":
        return f"https://{host}:{HTTPS_PORT}"
    if spec.public_access_port is None:
        return None
    return f"https://{host}:{spec.public_access_port}"


def node_toleration(spec: ClusterSpec) -> str:
    """The taint a user's node joins with, as vCluster's enforceTolerations spells it."""
    return f"{CLUSTER_LABEL}={spec.id}:NoSchedule"


def namespace_labels(spec: ClusterSpec) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, CLUSTER_LABEL: spec.id}


def cpu_quantity(milli: int) -> str:
    """Canonical Kubernetes form (the API server answers ``1``, not ``1000m``)."""
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(mib: int) -> str:
    """Canonical binary-SI form: the largest suffix that keeps an integer (``4Gi``)."""
    value, suffix = mib, "Mi"
    for bigger in ("Gi", "Ti", "Pi", "Ei"):
        if value % 1024:
            break
        value, suffix = value // 1024, bigger
    return f"{value}{suffix}"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's rule: mappings merge key by key, anything else in ``override`` wins."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _path(values: Mapping[str, Any], *keys: str) -> Any:
    node: Any = values
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _extend(values: Mapping[str, Any], keys: tuple[str, ...], ours: list[str]) -> list[str]:
    """The operator's list at ``keys`` plus ours (lists would otherwise be replaced)."""
    theirs = _path(values, *keys)
    found = [str(item) for item in theirs] if isinstance(theirs, list) else []
    return found + [item for item in ours if item not in found]


def vcluster_values(spec: ClusterSpec, base: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's values file (``base``) deep-merged with this cluster's values."""
    endpoint = api_endpoint(spec)
    sans = [in_cluster_host(spec)]
    if spec.control_plane_host:
        sans.insert(0, spec.control_plane_host)
    node_port = spec.public_access_port if service_type(spec) == "NodePort" else None
    export: dict[str, Any] = {"context": spec.vcluster_name}
    if endpoint is not None:
        export["server"] = endpoint
    ours: dict[str, Any] = {
        "controlPlane": {
            "distro": {"k8s": {"enabled": True, "version": spec.kubernetes_version}},
            "statefulSet": {
                "resources": {
                    "requests": {
                        "cpu": cpu_quantity(spec.control_plane_cpu_request_milli_cores),
                        "memory": memory_quantity(spec.control_plane_memory_request_mib),
                    }
                }
            },
            # 0 lets Kubernetes pick; anything else would be invalid on a ClusterIP.
            "service": {"spec": {"type": service_type(spec)}, "httpsNodePort": node_port or 0},
            "proxy": {"extraSANs": _extend(base, ("controlPlane", "proxy", "extraSANs"), sans)},
        },
        "exportKubeConfig": export,
        "sync": {
            "fromHost": {
                "nodes": {
                    "enabled": True,
                    "selector": {"all": False, "labels": {CLUSTER_LABEL: spec.id}},
                }
            },
            "toHost": {
                "pods": {
                    "enforceTolerations": _extend(
                        base,
                        ("sync", "toHost", "pods", "enforceTolerations"),
                        [node_toleration(spec)],
                    )
                }
            },
        },
        "policies": {"resourceQuota": {"enabled": False}, "limitRange": {"enabled": False}},
    }
    return deep_merge(base, ours)


def control_plane_replicas(values: Mapping[str, Any]) -> int:
    replicas = _path(values, "controlPlane", "statefulSet", "highAvailability", "replicas")
    return replicas if isinstance(replicas, int) and replicas > 0 else 1


def quota_spec(spec: ClusterSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Requests the namespace may hold: the workloads' limit plus what the platform runs
    there (the control-plane replicas and one helm job pod)."""
    replicas = control_plane_replicas(values)
    cpu = (
        spec.workload_cpu_limit_milli_cores
        + replicas * spec.control_plane_cpu_request_milli_cores
        + DEFAULT_CPU_REQUEST_MILLI
    )
    memory = (
        spec.workload_memory_limit_mib
        + replicas * spec.control_plane_memory_request_mib
        + DEFAULT_MEMORY_REQUEST_MIB
    )
    return {"hard": {"requests.cpu": cpu_quantity(cpu), "requests.memory": memory_quantity(memory)}}


def limit_range_spec() -> dict[str, Any]:
    return {
        "limits": [
            {
                "type": "Container",
                "defaultRequest": {
                    "cpu": cpu_quantity(DEFAULT_CPU_REQUEST_MILLI),
                    "memory": memory_quantity(DEFAULT_MEMORY_REQUEST_MIB),
                },
            }
        ]
    }


def parse_values_file(text: str) -> dict[str, Any]:
    """``KUBEBYON_VCLUSTER_VALUES_FILE``: a YAML mapping (or empty)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError("must hold a YAML mapping of Helm values")
    return loaded


def readdress_kubeconfig(text: str, server: str) -> str:
    """The vCluster's own kubeconfig with every cluster entry pointing at ``server``."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        config = None
    clusters = config.get("clusters") if isinstance(config, dict) else None
    if not isinstance(clusters, list) or not clusters:
        raise ValueError("the vCluster kubeconfig Secret does not hold a kubeconfig")
    for entry in clusters:
        if not isinstance(entry, dict) or not isinstance(entry.get("cluster"), dict):
            raise ValueError("the vCluster kubeconfig Secret does not hold a kubeconfig")
        entry["cluster"]["server"] = server
    return yaml.safe_dump(config, sort_keys=False)
