"""Rules for what a console user may ask of a cluster (seed §2.1, §3.1, §3.2).

Plain functions over plain values: the API turns each ``Problem`` into a 400 naming the
field. Limits that operators tune (supported Kubernetes versions, resource bounds) come
in as ``ClusterRules``, built from the process settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kubebyon.domain.authz import Role
from kubebyon.domain.system_settings import domain_name_problem

STATUSES = ("provisioning", "ready", "error", "deleting", "deleted")
CONNECTION_STATUSES = ("pending", "kubeconfig_pending", "reachable", "unreachable", "error")
PUBLIC_ACCESS_MODES = ("nodeport", "loadbalancer")

RESOURCE_FIELDS = (
    "workload_cpu_limit_milli_cores",
    "workload_memory_limit_mib",
    "control_plane_cpu_request_milli_cores",
    "control_plane_memory_request_mib",
)
# Seed §3.2: the only fields PUT may change.
UPDATABLE_FIELDS = frozenset(
    {
        *RESOURCE_FIELDS,
        "public_access_enabled",
        "public_access_mode",
        "control_plane_host",
        "managed_workload_ingress_enabled",
    }
)

# The resource name clusters carry in authorization roles (Kite style: plural, lower case).
AUTHZ_RESOURCE = "clusters"

# Operation and job types (seed §2.6); the job handlers of the vcluster side use them too.
CREATE, UPDATE, DELETE = "cluster_create", "cluster_update", "cluster_delete"

_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 63
# The vCluster release is named after vcluster_name, and k3s's helm-controller runs it as
# the Job ``helm-install-<name>`` (``helm-delete-<name>`` on removal). Job names longer
# than 63 characters are refused (they become a label value), so 63 - 13 = 50. The same
# name is the host Service of the control plane, and Service names must start with a
# letter (RFC 1035). ``vc-<name>`` (kubeconfig Secret, quota) and ``<name>-headless``
# stay within 63 as well.
MAX_VCLUSTER_NAME_LENGTH = 50


class Problem(NamedTuple):
    field: str
    message: str


@dataclass(frozen=True)
class ClusterRules:
    kubernetes_versions: tuple[str, ...]
    resource_bounds: Mapping[str, tuple[int, int]]  # field -> (min, max), inclusive


def dns_label_problem(value: str, max_length: int = MAX_NAME_LENGTH) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if not _DNS_LABEL.match(value):
        return (
            "must be a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def vcluster_name_problem(value: str) -> str | None:
    problem = dns_label_problem(value, MAX_VCLUSTER_NAME_LENGTH)
    if problem is None and not value[0].isalpha():
        return "must start with a letter (it also names the control plane's Service)"
    return problem


def normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def host_problem(host: str) -> str | None:
    """control_plane_host: a DNS host name or an IP address, without port or scheme."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        return "must be a host name (e.g. api.example.com) or an IP address, without port"
    if labels[-1].isdigit():
        return "is neither a valid IP address nor a host name"
    return None


def _resource_problem(name: str, value: Any, rules: ClusterRules) -> str | None:
    low, high = rules.resource_bounds[name]
    if not low <= value <= high:
        return f"must be between {low} and {high}"
    return None


def normalized(values: Mapping[str, Any]) -> dict[str, Any]:
    """Host names are case-insensitive and may end in '.'; IPv6 in its short form."""
    out = dict(values)
    if out.get("control_plane_host") is not None:
        out["control_plane_host"] = normalize_host(out["control_plane_host"])
    return out


def with_create_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """Seed §3.1: vcluster_name defaults to name; namespace to the final vcluster_name
    (checked by ``create_problems``, stored as vcluster_name). A cluster created with a
    control_plane_host is published on it (NodePort) unless public access is turned off
    explicitly: the seed's example hands out ``https://<control_plane_host>:<port>``, and a
    kubeconfig only reachable inside the host cluster is of no use to its owner."""
    spec = normalized(values)
    if spec.get("vcluster_name") is None:
        spec["vcluster_name"] = spec["name"]
    if spec.get("public_access_enabled") is None:
        spec["public_access_enabled"] = bool(spec.get("control_plane_host"))
    return spec


def create_problems(spec: Mapping[str, Any], rules: ClusterRules) -> list[Problem]:
    """Problems of a creation request after ``with_create_defaults``."""
    problems: list[Problem] = []
    if (problem := dns_label_problem(spec["name"])) is not None:
        problems.append(Problem("name", problem))
    if (problem := vcluster_name_problem(spec["vcluster_name"])) is not None:
        problems.append(Problem("vcluster_name", problem))
    namespace = spec.get("namespace")
    if namespace is not None and namespace != spec["vcluster_name"]:
        problems.append(
            Problem(
                "namespace",
                "must equal vcluster_name (each vCluster owns the host namespace of its name); "
                "leave it out to use vcluster_name",
            )
        )
    if spec["kubernetes_version"] not in rules.kubernetes_versions:
        supported = ", ".join(rules.kubernetes_versions)
        problems.append(Problem("kubernetes_version", f"must be one of {supported}"))
    problems += update_problems({key: spec[key] for key in UPDATABLE_FIELDS if key in spec}, rules)
    return problems


def update_problems(changes: Mapping[str, Any], rules: ClusterRules) -> list[Problem]:
    """Problems of the §3.2 fields a request sets (None means the client sent null)."""
    problems: list[Problem] = []
    for name in sorted(changes):
        value = changes[name]
        if value is None:
            if name != "control_plane_host":
                problems.append(Problem(name, "must not be null"))
            continue
        problem = None
        if name in RESOURCE_FIELDS:
            problem = _resource_problem(name, value, rules)
        elif name == "control_plane_host":
            problem = host_problem(value)
        if problem is not None:
            problems.append(Problem(name, problem))
    return problems


def ingress_cname_target(
    cluster_id: str, vcluster_name: str, base_domain: str | None
) -> str | None:
    """The cluster-level CNAME target of managed workload ingress, or None when the admin
    has not set a valid ``managed_workload_ingress_base_domain``.

    ``<vcluster_name>-<last 8 characters of the cluster id>.<base domain>``: readable, and
    unique per cluster even when a vcluster_name is reused after a deletion, so hostnames
    that customers pointed at a deleted cluster never land on someone else's cluster.
    (``cl_`` ids contain '_', which DNS host names do not allow.)
    """
    if not base_domain or domain_name_problem(base_domain) is not None:
        return None
    return f"{vcluster_name}-{cluster_id[-8:]}.{base_domain}"


def granted_cluster_ids(roles: Iterable[Role]) -> frozenset[str] | None:
    """Cluster ids the roles name exactly, or None when a pattern is a glob or ``*``
    (then any cluster may be granted, and a listing must look at all of them). Deny
    patterns only take clusters away; the engine applies them afterwards."""
    ids: set[str] = set()
    for role in roles:
        for pattern in role.clusters:
            if pattern.startswith("!"):
                continue
            if any(c in pattern for c in "*?["):
                return None
            ids.add(pattern)
    return frozenset(ids)
