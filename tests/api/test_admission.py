"""The host's admission webhooks of a cluster (seed "Admission / Internal"), called with
real ``admission.k8s.io/v1`` AdmissionReview bodies as the Kubernetes API server sends
them (kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.admission import KEY_PURPOSE, signature
from kubebyon.domain.ids import new_id
from tests.fakes.kube_api import json_patch

KEY = "kubebyon.io/cluster-id"
UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


async def insert_cluster(db: Database, name: str, status: str = "ready") -> str:
    cluster_id = new_id("cl")
    await db.execute(
        "INSERT INTO clusters (id, name, namespace, vcluster_name, kubernetes_version, "
        "workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib, status) "
        "VALUES ($1, $2, $2, $2, 'v1.31.2', 2000, 2048, 500, 512, $3)",
        cluster_id,
        name,
        status,
    )
    return cluster_id


def synced_pod(namespace: str, **spec: Any) -> dict[str, Any]:
    """A pod as the vCluster syncer writes it into the host namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-x-default-x-demo",
            "namespace": namespace,
            "labels": {"app": "web", "vcluster.loft.sh/managed-by": "demo"},
            "annotations": {"vcluster.loft.sh/object-name": "web"},
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {},
                }
            ],
            "restartPolicy": "Always",
            "serviceAccountName": "vc-workload-demo",
            **spec,
        },
        "status": {},
    }


def review(obj: Any, *, namespace: str, operation: str = "CREATE") -> dict[str, Any]:
    """An AdmissionReview with the fields the API server fills in."""
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": UID,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": (obj or {}).get("metadata", {}).get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:demo:vc-demo",
                "uid": "014fbff9a07c",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": obj,
            "oldObject": copy.deepcopy(obj) if operation == "UPDATE" else None,
            "dryRun": False,
            "options": {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "UpdateOptions" if operation == "UPDATE" else "CreateOptions",
            },
        },
    }


def url(services: Services, cluster_id: str, hook: str, sig: str | None = None) -> str:
    sig = sig or signature(services.secrets.derive_key(KEY_PURPOSE), cluster_id)
    return f"/api/internal/admission/clusters/{cluster_id}/{sig}/{hook}"


async def call(client: TestClient, path: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    return response.status, await response.json()


def answer(payload: Any) -> dict[str, Any]:
    assert payload["apiVersion"] == "admission.k8s.io/v1"
    assert payload["kind"] == "AdmissionReview"
    assert payload["response"]["uid"] == UID
    result: dict[str, Any] = payload["response"]
    return result


@pytest.fixture
async def cluster(services: Services) -> str:
    return await insert_cluster(services.db, "demo")


PINNED = {
    "nodeSelector": {KEY: "{cluster}"},
    "tolerations": [
        {"key": KEY, "operator": "Equal", "value": "{cluster}", "effect": "NoSchedule"}
    ],
}


def pinned_pod(cluster_id: str) -> dict[str, Any]:
    spec = json.loads(json.dumps(PINNED).replace("{cluster}", cluster_id))
    return synced_pod("demo", **spec)


# ------------------------------------------------------------------- mutate


async def test_mutate_adds_the_node_selector_and_toleration(
    client: TestClient, services: Services, cluster: str
) -> None:
    obj = synced_pod("demo")
    status, payload = await call(
        client, url(services, cluster, "mutate-pod"), review(obj, namespace="demo")
    )
    assert status == 200
    response = answer(payload)
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = json_patch(obj, json.loads(base64.b64decode(response["patch"])))
    assert patched["spec"]["nodeSelector"] == {KEY: cluster}
    assert patched["spec"]["tolerations"] == [
        {"key": KEY, "operator": "Equal", "value": cluster, "effect": "NoSchedule"}
    ]


async def test_mutate_leaves_a_pinned_pod_alone(
    client: TestClient, services: Services, cluster: str
) -> None:
    body = review(pinned_pod(cluster), namespace="demo")
    status, payload = await call(client, url(services, cluster, "mutate-pod"), body)
    assert status == 200
    assert answer(payload) == {"uid": UID, "allowed": True}


# ----------------------------------------------------------------- validate


async def test_validate_admits_a_pinned_pod_on_create_and_update(
    client: TestClient, services: Services, cluster: str
) -> None:
    for operation in ("CREATE", "UPDATE"):
        body = review(pinned_pod(cluster), namespace="demo", operation=operation)
        status, payload = await call(client, url(services, cluster, "validate-pod"), body)
        assert status == 200
        assert answer(payload) == {"uid": UID, "allowed": True}


async def test_validate_refuses_an_unpinned_pod_saying_why(
    client: TestClient, services: Services, cluster: str
) -> None:
    for operation in ("CREATE", "UPDATE"):
        body = review(synced_pod("demo"), namespace="demo", operation=operation)
        status, payload = await call(client, url(services, cluster, "validate-pod"), body)
        assert status == 200
        response = answer(payload)
        assert response["allowed"] is False
        assert response["status"]["code"] == 403
        message = response["status"]["message"]
        assert "'web-x-default-x-demo' is not pinned to its nodes" in message
        assert f"{KEY}={cluster}" in message


async def test_validate_refuses_a_pod_tolerating_another_clusters_taint(
    client: TestClient, services: Services, cluster: str
) -> None:
    other = await insert_cluster(services.db, "other")
    obj = pinned_pod(cluster)
    obj["spec"]["tolerations"].append(
        {"key": KEY, "operator": "Equal", "value": other, "effect": "NoSchedule"}
    )
    status, payload = await call(
        client, url(services, cluster, "validate-pod"), review(obj, namespace="demo")
    )
    assert status == 200
    response = answer(payload)
    assert response["allowed"] is False
    assert "tolerates the taint of other KubeBYON clusters' nodes" in response["status"]["message"]


async def test_validate_refuses_a_pod_outside_kubebyon_namespaces_tolerating_the_taint(
    client: TestClient, services: Services, cluster: str
) -> None:
    await insert_cluster(services.db, "other")
    sneaky = synced_pod("default", tolerations=[{"key": KEY, "operator": "Exists"}])
    status, payload = await call(
        client, url(services, cluster, "validate-pod"), review(sneaky, namespace="default")
    )
    assert status == 200
    response = answer(payload)
    assert response["allowed"] is False
    assert (
        "in namespace 'default' tolerates the kubebyon.io/cluster-id taint"
        in (response["status"]["message"])
    )
    # In another KubeBYON cluster's namespace the same toleration is that cluster's business.
    status, payload = await call(
        client, url(services, cluster, "validate-pod"), review(sneaky, namespace="other")
    )
    assert (status, answer(payload)["allowed"]) == (200, True)


async def test_deletes_and_other_kinds_are_admitted_untouched(
    client: TestClient, services: Services, cluster: str
) -> None:
    body = review(None, namespace="demo", operation="DELETE")
    body["request"]["oldObject"] = synced_pod("demo")
    for hook in ("mutate-pod", "validate-pod"):
        status, payload = await call(client, url(services, cluster, hook), body)
        assert status == 200
        assert answer(payload) == {"uid": UID, "allowed": True}
    binding = review({"apiVersion": "v1", "kind": "Binding"}, namespace="demo")
    binding["request"]["kind"] = {"group": "", "version": "v1", "kind": "Binding"}
    status, payload = await call(client, url(services, cluster, "validate-pod"), binding)
    assert (status, answer(payload)["allowed"]) == (200, True)


# ------------------------------------------------------------ who may call


async def test_a_wrong_signature_is_403_whether_or_not_the_cluster_exists(
    client: TestClient, services: Services, cluster: str
) -> None:
    other = await insert_cluster(services.db, "other")
    body = review(synced_pod("demo"), namespace="demo")
    other_signature = signature(services.secrets.derive_key(KEY_PURPOSE), other)
    for hook in ("mutate-pod", "validate-pod"):
        for path in (
            url(services, cluster, hook, "0" * 64),
            url(services, cluster, hook, other_signature),  # another cluster's URL
            url(services, "cl_missing", hook, "0" * 64),
        ):
            status, payload = await call(client, path, body)
            assert status == 403, path
            assert payload["error"]["code"] == "forbidden"


async def test_an_unknown_or_deleted_cluster_is_404(client: TestClient, services: Services) -> None:
    deleted = await insert_cluster(services.db, "gone", status="deleted")
    body = review(synced_pod("gone"), namespace="gone")
    for cluster_id in ("cl_missing", deleted):
        for hook in ("mutate-pod", "validate-pod"):
            status, payload = await call(client, url(services, cluster_id, hook), body)
            assert status == 404
            assert payload["error"]["code"] == "not_found"


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


async def test_malformed_reviews_are_400_never_500(
    client: TestClient, services: Services, cluster: str
) -> None:
    good = review(synced_pod("demo"), namespace="demo")
    v1beta1 = {**copy.deepcopy(good), "apiVersion": "admission.k8s.io/v1beta1"}
    bad_spec = copy.deepcopy(good)
    bad_spec["request"]["object"]["spec"] = ["not", "an", "object"]
    bad_selector = copy.deepcopy(good)
    bad_selector["request"]["object"]["spec"]["nodeSelector"] = [KEY]
    bad_tolerations = copy.deepcopy(good)
    bad_tolerations["request"]["object"]["spec"]["tolerations"] = {"key": KEY}
    bodies: list[Any] = [
        "{not json",
        "[]",
        json.dumps([good]),
        v1beta1,
        _without(good, "request"),
        _without(good, "request", "uid"),
        _without(good, "request", "kind"),
        _without(good, "request", "operation"),
        {**copy.deepcopy(good), "request": {**good["request"], "uid": 7}},
        {**copy.deepcopy(good), "request": {**good["request"], "object": None}},
        bad_spec,
        bad_selector,
        bad_tolerations,
    ]
    for hook in ("mutate-pod", "validate-pod"):
        for body in bodies:
            status, payload = await call(client, url(services, cluster, hook), body)
            assert status == 400, (hook, body)
            assert payload["error"]["code"] in (
                "invalid_json",
                "invalid_request",
                "validation_error",
            )
