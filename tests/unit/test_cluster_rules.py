"""Pure cluster rules (seed §3.1, §3.2): names, namespace, versions, bounds, hosts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubebyon.domain.authz import Role
from kubebyon.domain.clusters import (
    MAX_VCLUSTER_NAME_LENGTH,
    ClusterRules,
    create_problems,
    dns_label_problem,
    granted_cluster_ids,
    host_problem,
    ingress_cname_target,
    normalize_host,
    update_problems,
    vcluster_name_problem,
    with_create_defaults,
)
from kubebyon.settings import Settings

RULES = ClusterRules(
    ("v1.31.2", "v1.32.1"),
    {
        "workload_cpu_limit_milli_cores": (100, 64000),
        "workload_memory_limit_mib": (128, 262144),
        "control_plane_cpu_request_milli_cores": (50, 8000),
        "control_plane_memory_request_mib": (128, 16384),
    },
)
# Seed §3.1.
SEED_CREATE: dict[str, Any] = {
    "name": "demo",
    "vcluster_name": "demo",
    "namespace": "demo",
    "control_plane_host": "203.0.113.10",
    "kubernetes_version": "v1.31.2",
    "workload_cpu_limit_milli_cores": 2000,
    "workload_memory_limit_mib": 4096,
    "control_plane_cpu_request_milli_cores": 100,
    "control_plane_memory_request_mib": 512,
}


def fields(values: dict[str, Any]) -> list[str]:
    return [problem.field for problem in create_problems(with_create_defaults(values), RULES)]


def test_the_seed_example_is_valid() -> None:
    assert fields(SEED_CREATE) == []


@pytest.mark.parametrize("name", ["a", "demo", "demo-1", "1demo", "a" * 63])
def test_dns_labels_accepted(name: str) -> None:
    assert dns_label_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "Demo", "demo_1", "-demo", "demo-", "de.mo", "a" * 64, "démo", "de mo"]
)
def test_dns_labels_refused(name: str) -> None:
    assert dns_label_problem(name) is not None
    assert fields({**SEED_CREATE, "name": name, "vcluster_name": "demo"}) == ["name"]


def test_vcluster_name_leaves_room_for_the_helm_install_job() -> None:
    longest = "v" * MAX_VCLUSTER_NAME_LENGTH
    assert vcluster_name_problem(longest) is None
    assert len(f"helm-install-{longest}") == 63
    assert vcluster_name_problem(longest + "v") is not None
    assert fields({**SEED_CREATE, "vcluster_name": longest + "v", "namespace": None}) == [
        "vcluster_name"
    ]


def test_vcluster_name_must_start_with_a_letter() -> None:
    assert vcluster_name_problem("1demo") is not None
    assert fields({**SEED_CREATE, "name": "1demo", "vcluster_name": None, "namespace": None}) == [
        "vcluster_name"
    ]


def test_vcluster_name_and_namespace_defaults() -> None:
    spec = with_create_defaults({**SEED_CREATE, "vcluster_name": None, "namespace": None})
    assert spec["vcluster_name"] == "demo"
    assert fields({**SEED_CREATE, "vcluster_name": "other", "namespace": None}) == []


def test_a_namespace_other_than_vcluster_name_is_refused() -> None:
    assert fields({**SEED_CREATE, "namespace": "elsewhere"}) == ["namespace"]
    # The default vcluster_name (= name) is what namespace is compared with.
    assert fields({**SEED_CREATE, "vcluster_name": None, "namespace": "demo"}) == []
    assert fields({**SEED_CREATE, "vcluster_name": None, "namespace": "other"}) == ["namespace"]


def test_kubernetes_version_must_be_supported() -> None:
    assert fields({**SEED_CREATE, "kubernetes_version": "v1.32.1"}) == []
    problems = create_problems({**SEED_CREATE, "kubernetes_version": "v1.99.0"}, RULES)
    assert [p.field for p in problems] == ["kubernetes_version"]
    assert "v1.31.2, v1.32.1" in problems[0].message


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("workload_cpu_limit_milli_cores", 100, 64000),
        ("workload_memory_limit_mib", 128, 262144),
        ("control_plane_cpu_request_milli_cores", 50, 8000),
        ("control_plane_memory_request_mib", 128, 16384),
    ],
)
def test_resources_within_bounds(field: str, low: int, high: int) -> None:
    for ok in (low, high):
        assert fields({**SEED_CREATE, field: ok}) == []
    for bad in (low - 1, high + 1, 0, -5):
        assert fields({**SEED_CREATE, field: bad}) == [field]
    assert (
        update_problems({field: high + 1}, RULES)[0].message == f"must be between {low} and {high}"
    )


@pytest.mark.parametrize(
    "host", ["203.0.113.10", "2001:db8::1", "api.demo.example.com", "localhost", "a-b.example"]
)
def test_control_plane_hosts_accepted(host: str) -> None:
    assert host_problem(host) is None


@pytest.mark.parametrize(
    "host",
    [
        "203.0.113.10:6443",
        "https://api.example.com",
        "api.example.com/path",
        "203.0.113.999",
        "under_score.example.com",
        "-bad.example.com",
        "a..b",
        "",
        "x" * 254,
        "[2001:db8::1]",
    ],
)
def test_control_plane_hosts_refused(host: str) -> None:
    assert host_problem(host) is not None
    assert fields({**SEED_CREATE, "control_plane_host": host}) == ["control_plane_host"]


def test_hosts_are_normalized() -> None:
    assert normalize_host("API.Example.COM.") == "api.example.com"
    assert normalize_host("2001:DB8:0:0:0:0:0:1") == "2001:db8::1"
    spec = with_create_defaults({**SEED_CREATE, "control_plane_host": "Api.Demo.Example.com."})
    assert spec["control_plane_host"] == "api.demo.example.com"


def test_update_nulls() -> None:
    assert update_problems({"control_plane_host": None}, RULES) == []
    problems = update_problems(
        {"public_access_enabled": None, "workload_memory_limit_mib": None}, RULES
    )
    assert [p.field for p in problems] == ["public_access_enabled", "workload_memory_limit_mib"]


def test_several_problems_are_reported_together() -> None:
    values = {
        **SEED_CREATE,
        "name": "Bad",
        "kubernetes_version": "v0",
        "workload_memory_limit_mib": 1,
    }
    assert set(fields(values)) == {"name", "kubernetes_version", "workload_memory_limit_mib"}


def test_ingress_cname_target() -> None:
    first, second = "cl_01aaaaaaaaaaaaaaaaaaaaaa1111", "cl_01aaaaaaaaaaaaaaaaaaaaaa2222"
    target = ingress_cname_target(first, "demo", "apps.example.com")
    assert target == "demo-aaaa1111.apps.example.com"
    # A vcluster_name reused after deletion gets a different target.
    assert ingress_cname_target(second, "demo", "apps.example.com") != target
    for base in (None, "", "not a domain", "localhost", "10.0.0.1"):
        assert ingress_cname_target(first, "demo", base) is None
    longest = ingress_cname_target(first, "v" * MAX_VCLUSTER_NAME_LENGTH, "apps.example.com")
    assert longest is not None and len(longest.split(".")[0]) <= 63


def _role(*clusters: str) -> Role:
    return Role(1, "r", clusters, ("*",), ("*",), ("get",))


def test_granted_cluster_ids() -> None:
    assert granted_cluster_ids([]) == frozenset()
    assert granted_cluster_ids([_role("cl_a", "!cl_b"), _role("cl_c")]) == {"cl_a", "cl_c"}
    assert granted_cluster_ids([_role("cl_a"), _role("*")]) is None
    assert granted_cluster_ids([_role("cl_*")]) is None


def test_settings_supported_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "v1.31.2" in Settings().supported_kubernetes_versions  # the seed's example
    monkeypatch.setenv("KUBEBYON_SUPPORTED_KUBERNETES_VERSIONS", " v1.30.1 , v1.31.0 ")
    assert Settings().supported_kubernetes_versions == ["v1.30.1", "v1.31.0"]
    monkeypatch.setenv("KUBEBYON_SUPPORTED_KUBERNETES_VERSIONS", "v1.30.1,1.31")
    with pytest.raises(ValidationError, match=r"'1\.31' is not a version"):
        Settings()


def test_settings_resource_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBYON_WORKLOAD_MEMORY_LIMIT_MIB_MAX", "1024")
    assert Settings().cluster_resource_bounds["workload_memory_limit_mib"] == (128, 1024)
    monkeypatch.setenv("KUBEBYON_WORKLOAD_MEMORY_LIMIT_MIB_MIN", "2048")
    with pytest.raises(ValidationError, match="MIN must not exceed"):
        Settings()
    monkeypatch.setenv("KUBEBYON_WORKLOAD_MEMORY_LIMIT_MIB_MIN", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_public_access_defaults_to_on_when_a_control_plane_host_is_given() -> None:
    base = {"name": "demo", "vcluster_name": None}
    assert with_create_defaults({**base, "control_plane_host": "203.0.113.10"})[
        "public_access_enabled"
    ]
    assert not with_create_defaults({**base, "control_plane_host": None})["public_access_enabled"]
    explicit = {**base, "control_plane_host": "203.0.113.10", "public_access_enabled": False}
    assert not with_create_defaults(explicit)["public_access_enabled"]
