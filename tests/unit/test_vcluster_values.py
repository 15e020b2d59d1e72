"""The vCluster values builder against the chart keys of the reference
(../shared/reference/vcluster-and-join.md §2, §3, §7; vCluster chart v0.36.1)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubebyon.domain.vcluster_values import (
    ClusterSpec,
    InvalidClusterSpec,
    api_endpoint,
    check,
    cpu_quantity,
    limit_range_spec,
    memory_quantity,
    parse_values_file,
    quota_spec,
    readdress_kubeconfig,
    vcluster_values,
)
from kubebyon.settings import ConfigurationError, load_settings

SPEC = ClusterSpec(
    id="cl_0123456789abcdefghjkmnpqrs",
    vcluster_name="demo",
    namespace="demo",
    kubernetes_version="v1.31.2",
    control_plane_host="203.0.113.10",
    control_plane_cpu_request_milli_cores=100,
    control_plane_memory_request_mib=512,
    workload_cpu_limit_milli_cores=2000,
    workload_memory_limit_mib=4096,
    public_access_enabled=True,
    public_access_mode="nodeport",
    public_access_port=30443,
)


def at(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for key in dotted.split("."):
        node = node[key]
    return node


def test_per_cluster_keys_follow_the_reference() -> None:
    values = vcluster_values(SPEC, {})
    # §3: control-plane requests and the Kubernetes version (version wins over image.tag).
    assert at(values, "controlPlane.statefulSet.resources.requests") == {
        "cpu": "100m",
        "memory": "512Mi",
    }
    assert at(values, "controlPlane.distro.k8s.version") == "v1.31.2"
    assert at(values, "controlPlane.distro.k8s.enabled") is True
    # §1.5/§3: public access through the control-plane Service.
    assert at(values, "controlPlane.service.spec.type") == "NodePort"
    assert at(values, "controlPlane.service.httpsNodePort") == 30443
    # §2: the exported kubeconfig points at the endpoint, whose host is a SAN.
    assert at(values, "exportKubeConfig.server") == "https://203.0.113.10:30443"
    assert at(values, "exportKubeConfig.context") == "demo"
    assert "203.0.113.10" in at(values, "controlPlane.proxy.extraSANs")
    # §7: only this cluster's host nodes, and the toleration for their taint.
    assert at(values, "sync.fromHost.nodes.enabled") is True
    assert at(values, "sync.fromHost.nodes.selector") == {
        "all": False,
        "labels": {"kubebyon.io/cluster-id": SPEC.id},
    }
    assert at(values, "sync.toHost.pods.enforceTolerations") == [
        f"kubebyon.io/cluster-id={SPEC.id}:NoSchedule"
    ]


def test_chart_quota_is_off_so_its_nodeport_ban_never_applies() -> None:
    """The chart's default quota has services.nodeports: 0 (§3), which would reject the
    NodePort control-plane Service; KubeBYON writes its own quota instead."""
    values = vcluster_values(SPEC, {"policies": {"resourceQuota": {"enabled": True}}})
    assert at(values, "policies.resourceQuota.enabled") is False
    assert at(values, "policies.limitRange.enabled") is False
    hard = quota_spec(SPEC, values)["hard"]
    assert not any(key.startswith("services.") for key in hard)


def test_quota_covers_workloads_plus_what_the_platform_runs_there() -> None:
    values = vcluster_values(SPEC, {})
    # 2000m workloads + 100m control plane + 100m for the helm job pod.
    assert quota_spec(SPEC, values)["hard"] == {
        "requests.cpu": "2200m",
        "requests.memory": "4736Mi",
    }
    ha = vcluster_values(
        SPEC, {"controlPlane": {"statefulSet": {"highAvailability": {"replicas": 3}}}}
    )
    assert quota_spec(SPEC, ha)["hard"]["requests.cpu"] == "2400m"
    limits = limit_range_spec()["limits"][0]
    assert limits["type"] == "Container"
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


def test_quantities_are_in_the_form_the_api_server_answers_with() -> None:
    assert cpu_quantity(2000) == "2"
    assert cpu_quantity(2500) == "2500m"
    assert memory_quantity(4096) == "4Gi"
    assert memory_quantity(1536) == "1536Mi"
    assert memory_quantity(1024 * 1024) == "1Ti"


def test_public_access_modes_and_the_endpoint() -> None:
    lb = replace(SPEC, public_access_mode="loadbalancer")
    assert at(vcluster_values(lb, {}), "controlPlane.service.spec.type") == "LoadBalancer"
    assert at(vcluster_values(lb, {}), "controlPlane.service.httpsNodePort") == 0
    assert api_endpoint(lb) == "https://203.0.113.10:443"

    private = replace(SPEC, public_access_enabled=False)
    values = vcluster_values(private, {"controlPlane": {"service": {"httpsNodePort": 31000}}})
    assert at(values, "controlPlane.service.spec.type") == "ClusterIP"
    assert at(values, "controlPlane.service.httpsNodePort") == 0  # invalid on a ClusterIP
    assert api_endpoint(private) == "https://demo.demo.svc:443"
    assert "demo.demo.svc" in at(values, "controlPlane.proxy.extraSANs")

    # A NodePort Kubernetes picks is unknown until the Service exists.
    unknown = replace(SPEC, public_access_port=None)
    assert api_endpoint(unknown) is None
    assert "server" not in vcluster_values(unknown, {})["exportKubeConfig"]

    ipv6 = replace(SPEC, control_plane_host="2001:db8::1")
    assert api_endpoint(ipv6) == "https://[2001:db8::1]:30443"


def test_operator_values_are_deep_merged_and_lists_extended() -> None:
    base = {
        "controlPlane": {
            "statefulSet": {
                "image": {"repository": "loft-sh/vcluster-oss"},
                "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}},
            },
            "proxy": {"extraSANs": ["vcluster.internal.example"]},
        },
        "sync": {"toHost": {"pods": {"enforceTolerations": ["gpu=true:NoSchedule"]}}},
    }
    values = vcluster_values(SPEC, base)
    assert at(values, "controlPlane.statefulSet.image.repository") == "loft-sh/vcluster-oss"
    assert at(values, "controlPlane.statefulSet.resources") == {
        "requests": {"cpu": "100m", "memory": "512Mi"},  # the cluster's own win
        "limits": {"memory": "2Gi"},
    }
    assert at(values, "controlPlane.proxy.extraSANs") == [
        "vcluster.internal.example",
        "203.0.113.10",
        "demo.demo.svc",
    ]
    assert at(values, "sync.toHost.pods.enforceTolerations") == [
        "gpu=true:NoSchedule",
        f"kubebyon.io/cluster-id={SPEC.id}:NoSchedule",
    ]
    assert base["controlPlane"]["statefulSet"]["resources"]["requests"] == {"cpu": "1"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"public_access_enabled": True, "control_plane_host": None}, "control_plane_host"),
        ({"namespace": "other"}, "namespace"),
        ({"vcluster_name": "Demo", "namespace": "Demo"}, "vcluster_name"),
        ({"vcluster_name": "x" * 51, "namespace": "x" * 51}, "vcluster_name"),
        ({"kubernetes_version": "1.31"}, "kubernetes_version"),
        ({"workload_cpu_limit_milli_cores": 0}, "workload_cpu_limit_milli_cores"),
        ({"control_plane_host": "api..example.com"}, "control_plane_host"),
        ({"public_access_mode": "ingress"}, "public_access_mode"),
    ],
)
def test_invalid_desired_state_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidClusterSpec, match=field):
        check(replace(SPEC, **changes))


def test_a_valid_spec_passes() -> None:
    check(SPEC)
    check(replace(SPEC, public_access_enabled=False, control_plane_host=None))


def test_values_file_must_be_a_mapping() -> None:
    assert parse_values_file("") == {}
    assert parse_values_file("controlPlane: {}\n") == {"controlPlane": {}}
    with pytest.raises(ValueError, match="mapping"):
        parse_values_file("- a\n- b\n")
    with pytest.raises(ValueError, match="YAML"):
        parse_values_file("a: [\n")


def test_kubeconfig_is_readdressed_keeping_its_credentials() -> None:
    original = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "demo",
                "cluster": {
                    "server": "https://localhost:8443",
                    "certificate-authority-data": "Q0E=",
                },
            }
        ],
        "users": [{"name": "demo", "user": {"client-key-data": "S0VZ"}}],
        "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}],
        "current-context": "demo",
    }
    readdressed = yaml.safe_load(
        readdress_kubeconfig(yaml.safe_dump(original), "https://203.0.113.10:30443")
    )
    assert readdressed["clusters"][0]["cluster"] == {
        "server": "https://203.0.113.10:30443",
        "certificate-authority-data": "Q0E=",
    }
    assert readdressed["users"] == original["users"]
    with pytest.raises(ValueError, match="kubeconfig"):
        readdress_kubeconfig("hello", "https://x:1")


def test_an_invalid_values_file_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("- not\n- a mapping\n")
    monkeypatch.setenv("KUBEBYON_VCLUSTER_VALUES_FILE", str(values))
    with pytest.raises(ConfigurationError) as err:
        load_settings()
    assert err.value.lines == [
        "KUBEBYON_VCLUSTER_VALUES_FILE: must hold a YAML mapping of Helm values"
    ]
    values.write_text("controlPlane:\n  statefulSet:\n    image:\n      repository: x\n")
    assert load_settings().vcluster_values_file == values
