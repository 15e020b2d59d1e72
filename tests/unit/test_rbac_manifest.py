"""config/kubernetes/rbac.yaml grants every host API call the daemon makes.

A call the ClusterRole does not grant fails only on a real cluster, as a 403 in a
cluster's ``last_error_message``. The calls are listed by hand below, next to where the
code makes them; add a line here with every new host call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubebyon.adapters.kube import (
    DEPLOYMENTS,
    HELM_CHARTS,
    JOBS,
    LIMIT_RANGES,
    NAMESPACES,
    RESOURCE_QUOTAS,
    SECRETS,
    SERVICES,
    STATEFUL_SETS,
    Resource,
)
from kubebyon.adapters.vcluster_probe import METRICS_GROUP, METRICS_VERSION

MANIFESTS = Path(__file__).resolve().parents[2] / "config" / "kubernetes"
METRICS_PODS = Resource(f"{METRICS_GROUP}/{METRICS_VERSION}", "pods")
ENSURE = ("get", "create", "patch")  # Kube.ensure: read, then create or merge-patch

# (resource, verbs, where the code makes the calls)
HOST_CALLS: list[tuple[Resource, tuple[str, ...], str]] = [
    (NAMESPACES, (*ENSURE, "delete"), "reconcilers/vcluster.py _namespace, _delete"),
    (RESOURCE_QUOTAS, ENSURE, "reconcilers/vcluster.py _converge (Kube.ensure)"),
    (LIMIT_RANGES, ENSURE, "reconcilers/vcluster.py _converge (Kube.ensure)"),
    (HELM_CHARTS, (*ENSURE, "delete"), "adapters/vcluster.py HelmChartInstaller"),
    (JOBS, ("get", "delete"), "adapters/vcluster.py status; ensure deletes a failed job"),
    (STATEFUL_SETS, ("get",), "adapters/vcluster.py status"),
    (DEPLOYMENTS, ("get",), "adapters/vcluster.py status (chart without persistence)"),
    (SECRETS, ("get",), "adapters/vcluster.py read_kubeconfig (vc-<name>)"),
    (SERVICES, ("get",), "adapters/vcluster.py https_node_port"),
    (METRICS_PODS, ("list",), "adapters/vcluster_probe.py control_plane_usage"),
]


def documents(name: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def cluster_role() -> Any:
    (role,) = [doc for doc in documents("rbac.yaml") if doc["kind"] == "ClusterRole"]
    return role


def granted() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) triples the ClusterRole grants."""
    return {
        (group, resource, verb)
        for rule in cluster_role()["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def group_of(resource: Resource) -> str:
    return resource.api_version.rpartition("/")[0]  # "" for the core group ("v1")


@pytest.mark.parametrize(
    ("resource", "verbs", "where"),
    HOST_CALLS,
    ids=[f"{r.plural}.{group_of(r) or 'core'}" for r, _, _ in HOST_CALLS],
)
def test_every_host_call_is_granted(resource: Resource, verbs: tuple[str, ...], where: str) -> None:
    missing = [v for v in verbs if (group_of(resource), resource.plural, v) not in granted()]
    assert not missing, f"rbac.yaml does not grant {missing} on {resource.plural} ({where})"


def test_rules_are_explicit() -> None:
    for rule in cluster_role()["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "nonResourceURLs" not in rule, rule


def test_the_role_is_bound_to_the_service_account_the_deployment_runs_as() -> None:
    (binding,) = [doc for doc in documents("rbac.yaml") if doc["kind"] == "ClusterRoleBinding"]
    (account,) = documents("serviceaccount.yaml")
    deployment = next(doc for doc in documents("deployment.yaml") if doc["kind"] == "Deployment")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role()["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_the_readme_table_shows_what_the_manifest_grants() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    table = readme.split("## RBAC summary", 1)[1].split("\n\n", 2)[1]
    documented = set()
    for line in table.splitlines()[2:]:  # after the header and its separator
        group, resources, verbs = (cell.strip() for cell in line.strip("|").split("|"))
        for resource in re.split(r",\s*", resources):
            for verb in re.split(r",\s*", verbs):
                documented.add(("" if group == "core" else group, resource, verb))
    assert documented == granted()
