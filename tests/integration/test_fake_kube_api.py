"""The fake Kubernetes API server, driven through the real kubernetes_asyncio client
(and the real kubectl binary)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient, ApiException

from tests.fakes.kube_api import FakeKubeAPI

# Every test gets a fresh event loop and a fresh fake, whatever the project defaults are.
pytestmark = pytest.mark.asyncio(loop_scope="function")

DEADLINE = 5.0


@pytest_asyncio.fixture(loop_scope="function")
async def kube() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="function")
async def api(kube: FakeKubeAPI) -> ApiClient:
    return await kube.api_client()  # closed by the fake on exit


@pytest.fixture
def core(api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def custom(api: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def status_body(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def secret(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "data": {"password": "aHVudGVyMg=="},
    }


async def collect(stream: watch.Watch, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE):
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


# ----------------------------------------------------------------------------- CRUD


async def test_namespace_crud(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    created = await core.create_namespace(client.V1Namespace(metadata={"name": "tenant-a"}))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.generation == 1
    assert created.status.phase == "Active"
    assert int(created.metadata.resource_version) == kube.resource_version

    got = await core.read_namespace("tenant-a")
    assert got.metadata.uid == created.metadata.uid

    listed = await core.list_namespace()
    assert [n.metadata.name for n in listed.items] == ["default", "kube-system", "tenant-a"]
    assert listed.metadata.resource_version == str(kube.resource_version)

    got.metadata.labels = {"tier": "gold"}
    replaced = await core.replace_namespace("tenant-a", got)
    assert replaced.metadata.labels == {"tier": "gold"}
    assert int(replaced.metadata.resource_version) > int(got.metadata.resource_version)
    assert replaced.metadata.uid == created.metadata.uid

    await core.delete_namespace("tenant-a")
    with pytest.raises(ApiException) as err:
        await core.read_namespace("tenant-a")
    assert err.value.status == 404
    assert kube.get("namespaces", "tenant-a") is None


async def test_secret_crud(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    created = await core.create_namespaced_secret("default", secret("db", app="pg"))
    assert created.type == "Opaque"
    assert created.metadata.namespace == "default"
    assert created.data == {"password": "aHVudGVyMg=="}

    generated = await core.create_namespaced_secret(
        "default", {"metadata": {"generateName": "token-"}, "stringData": {"a": "b"}}
    )
    assert generated.metadata.name.startswith("token-")
    assert len(generated.metadata.name) == len("token-") + 5

    names = [s.metadata.name for s in (await core.list_namespaced_secret("default")).items]
    assert names == sorted(["db", generated.metadata.name])

    current = await core.read_namespaced_secret("db", "default")
    current.data = {"password": "c2VjcmV0"}
    replaced = await core.replace_namespaced_secret("db", "default", current)
    assert replaced.data == {"password": "c2VjcmV0"}
    assert kube.get("secrets", "db", "default")["data"] == {"password": "c2VjcmV0"}

    deleted = await core.delete_namespaced_secret("db", "default")
    assert deleted is not None
    assert kube.objects("secrets", "default") == [
        kube.get("secrets", generated.metadata.name, "default")
    ]


async def test_already_exists_and_stale_resource_version_are_409(
    core: client.CoreV1Api,
) -> None:
    await core.create_namespaced_secret("default", secret("dup"))
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_secret("default", secret("dup"))
    assert err.value.status == 409
    body = status_body(err.value)
    assert body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "dup", "kind": "secrets"}

    first = await core.read_namespaced_secret("dup", "default")
    second = await core.read_namespaced_secret("dup", "default")
    first.metadata.labels = {"writer": "one"}
    await core.replace_namespaced_secret("dup", "default", first)
    second.metadata.labels = {"writer": "two"}
    with pytest.raises(ApiException) as err:
        await core.replace_namespaced_secret("dup", "default", second)
    assert err.value.status == 409
    assert status_body(err.value)["reason"] == "Conflict"

    # A merge patch carrying a stale resourceVersion is a precondition, too.
    with pytest.raises(ApiException) as err:
        await core.patch_namespaced_secret(
            "dup", "default", {"metadata": {"resourceVersion": second.metadata.resource_version}}
        )
    assert err.value.status == 409


async def test_not_found_is_404(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_secret("missing", "default")
    assert err.value.status == 404
    body = status_body(err.value)
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": "missing", "kind": "secrets"}
    assert body["message"] == 'secrets "missing" not found'

    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert err.value.status == 404
    assert status_body(err.value)["message"] == 'namespaces "nowhere" not found'

    with pytest.raises(ApiException) as err:
        await custom.get_namespaced_custom_object(
            "helm.cattle.io", "v1", "default", "helmcharts", "nope"
        )
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        await custom.list_cluster_custom_object("example.com", "v1", "widgets")
    assert err.value.status == 404


async def test_invalid_name_is_422(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        await core.create_namespace({"metadata": {"name": "Not_Valid"}})
    assert err.value.status == 422
    assert status_body(err.value)["reason"] == "Invalid"


# ------------------------------------------------------------------------ selectors


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier", ["a", "c"]),
        ("!tier", ["b", "d"]),
        ("tier in (front,edge)", ["a", "c"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("app=web,tier=front", ["a"]),
        ("app in (web, db), !tier", ["b"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
async def test_label_selectors(core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    labels = {
        "a": {"app": "web", "tier": "front"},
        "b": {"app": "web"},
        "c": {"app": "db", "tier": "edge"},
        "d": {},
    }
    for name, lbl in labels.items():
        await core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": lbl}}
        )
    listed = await core.list_namespaced_config_map("default", label_selector=selector)
    assert [c.metadata.name for c in listed.items] == expected


async def test_bad_label_selector_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_config_map("default", label_selector="a in (b")
    assert err.value.status == 400


async def test_field_selectors_and_all_namespaces(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    await core.create_namespace({"metadata": {"name": "other"}})
    for ns, name, node in [
        ("default", "p1", "n1"),
        ("default", "p2", "n2"),
        ("other", "p3", "n1"),
        ("other", "p4", None),
    ]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        await core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": spec})

    async def names(**kwargs: Any) -> list[str]:
        pods = await core.list_pod_for_all_namespaces(**kwargs)
        return [p.metadata.name for p in pods.items]

    assert await names() == ["p1", "p2", "p3", "p4"]
    assert await names(field_selector="spec.nodeName=n1") == ["p1", "p3"]
    assert await names(field_selector="spec.nodeName=") == ["p4"]
    assert await names(field_selector="metadata.namespace=other") == ["p3", "p4"]
    assert await names(field_selector="metadata.namespace!=other,spec.nodeName==n2") == ["p2"]
    assert await names(field_selector="metadata.name=p4", label_selector="!x") == ["p4"]
    assert await names(field_selector="status.phase=Pending") == ["p1", "p2", "p3", "p4"]
    assert kube.request_count[("GET", "/api/v1/pods")] == 7


async def test_list_pagination(core: client.CoreV1Api) -> None:
    for i in range(5):
        await core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
    first = await core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 3
    seen = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = await core.list_namespaced_config_map("default", limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert seen == [f"cm-{i}" for i in range(5)]


# -------------------------------------------------------------------------- patches


async def test_node_patches_and_status(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    kube.put_object(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "worker-1", "labels": {"zone": "a", "old": "x"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
        }
    )
    # A dict body goes out as application/strategic-merge-patch+json.
    node = await core.patch_node("worker-1", {"metadata": {"labels": {"zone": "b", "old": None}}})
    assert node.metadata.labels == {"zone": "b"}
    assert node.metadata.generation == 1  # metadata-only change

    # A list body goes out as application/json-patch+json (RFC 6902).
    node = await core.patch_node(
        "worker-1",
        [
            {"op": "test", "path": "/metadata/labels/zone", "value": "b"},
            {"op": "add", "path": "/metadata/labels/role~1gpu", "value": "true"},
            {"op": "replace", "path": "/spec/podCIDR", "value": "10.0.1.0/24"},
            {"op": "add", "path": "/spec/taints", "value": [{"key": "k", "effect": "NoSchedule"}]},
            {"op": "add", "path": "/spec/taints/-", "value": {"key": "j", "effect": "NoExecute"}},
            {"op": "remove", "path": "/spec/taints/0"},
        ],
    )
    assert node.metadata.labels == {"zone": "b", "role/gpu": "true"}
    assert node.spec.pod_cidr == "10.0.1.0/24"
    assert [t.key for t in node.spec.taints] == ["j"]
    assert node.metadata.generation == 2  # spec changed

    with pytest.raises(ApiException) as err:
        await core.patch_node(
            "worker-1", [{"op": "test", "path": "/metadata/labels/zone", "value": "zzz"}]
        )
    assert err.value.status == 422

    # Status goes through the status subresource only.
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    node = await core.patch_node_status("worker-1", {"status": ready})
    assert node.status.conditions[0].type == "Ready"
    node = await core.patch_node("worker-1", {"status": {"conditions": []}})
    assert node.status.conditions[0].type == "Ready"  # ignored on the main resource
    read = await core.read_node_status("worker-1")
    assert read.status.conditions[0].status == "True"

    # A no-op patch does not bump the resourceVersion.
    before = kube.resource_version
    await core.patch_node("worker-1", {"metadata": {"labels": {"zone": "b"}}})
    assert kube.resource_version == before


async def test_strategic_merge_patch_semantics(kube: FakeKubeAPI, api: ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})
    ready = {"type": "Ready", "status": "False"}
    await core.patch_node_status("n", {"status": {"conditions": [ready]}})
    pressure = {"type": "MemoryPressure", "status": "False"}
    await core.patch_node_status("n", {"status": {"conditions": [pressure]}})
    node = await core.patch_node_status(
        "n", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    # Conditions merge by type (a JSON merge patch would have replaced the list).
    assert [(c.type, c.status) for c in node.status.conditions] == [
        ("Ready", "True"),
        ("MemoryPressure", "False"),
    ]

    container = {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container]}}
    spec = {"selector": {"matchLabels": {"app": "x"}}, "template": template}
    await apps.create_namespaced_deployment("default", {"metadata": {"name": "d"}, "spec": spec})
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "proxy:1"},
                    ]
                }
            }
        }
    }
    deployment = await apps.patch_namespaced_deployment("d", "default", patch)
    containers = deployment.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("app", "app:2"), ("sidecar", "proxy:1")]
    assert [e.name for e in containers[0].env] == ["A", "B"]
    deployment = await apps.patch_namespaced_deployment(
        "d",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )
    assert [c.name for c in deployment.spec.template.spec.containers] == ["app"]

    # metadata.finalizers is a merge list: [] changes nothing, removal needs a directive.
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "f", "finalizers": ["a.io/x", "b.io/y"]}}
    )
    cm = await core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": []}})
    assert cm.metadata.finalizers == ["a.io/x", "b.io/y"]
    cm = await core.patch_namespaced_config_map(
        "f", "default", {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}}
    )
    assert cm.metadata.finalizers == ["b.io/y"]
    cm = await core.patch_namespaced_config_map(
        "f",
        "default",
        {"metadata": {"finalizers": []}},
        _content_type="application/merge-patch+json",
    )
    assert cm.metadata.finalizers is None


async def test_server_side_apply_approximation(core: client.CoreV1Api) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}}
    with pytest.raises(ApiException) as err:  # fieldManager is mandatory
        await core.patch_namespaced_config_map(
            "applied", "default", body, _content_type="application/apply-patch+yaml"
        )
    assert err.value.status == 422
    created = await core.patch_namespaced_config_map(
        "applied",
        "default",
        {**body, "data": {"a": "1"}},
        field_manager="kubebyon",
        _content_type="application/apply-patch+yaml",
    )
    assert created.data == {"a": "1"}
    updated = await core.patch_namespaced_config_map(
        "applied",
        "default",
        {**body, "data": {"b": "2"}},
        field_manager="kubebyon",
        _content_type="application/apply-patch+yaml",
    )
    assert updated.data == {"a": "1", "b": "2"}  # no field ownership: nothing is pruned


async def test_helmchart_custom_object_patches(
    kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    args = ("helm.cattle.io", "v1", "default", "helmcharts")
    chart = {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": "vcluster", "labels": {"team": "infra"}},
        "spec": {"chart": "vcluster", "version": "0.20.0", "set": {"a": "1"}},
        "status": {"jobName": "ignored-on-create"},
    }
    created = await custom.create_namespaced_custom_object(*args, chart)
    assert created["metadata"]["generation"] == 1
    assert "status" not in created  # CRD with a status subresource drops it on create

    merged = await custom.patch_namespaced_custom_object(
        *args,
        "vcluster",
        {"spec": {"version": "0.21.0", "set": {"a": None, "b": "2"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged["spec"] == {"chart": "vcluster", "version": "0.21.0", "set": {"b": "2"}}
    assert merged["metadata"]["generation"] == 2

    patched = await custom.patch_namespaced_custom_object(
        *args,
        "vcluster",
        [
            {"op": "replace", "path": "/spec/version", "value": "0.22.0"},
            {"op": "remove", "path": "/metadata/labels/team"},
        ],
    )
    assert patched["spec"]["version"] == "0.22.0"
    assert "labels" not in patched["metadata"]  # emptied maps are dropped, like the real one

    # kubernetes_asyncio sends a dict body to custom objects as json-patch+json
    # unless told otherwise; the real apiserver (and the fake) reject that.
    with pytest.raises(ApiException) as err:
        await custom.patch_namespaced_custom_object(*args, "vcluster", {"spec": {}})
    assert err.value.status == 400

    status = await custom.patch_namespaced_custom_object_status(
        *args,
        "vcluster",
        {"status": {"jobName": "helm-install-vcluster"}},
        _content_type="application/merge-patch+json",
    )
    assert status["status"] == {"jobName": "helm-install-vcluster"}
    assert status["spec"]["version"] == "0.22.0"

    # PUT of a custom object needs a resourceVersion, and a stale one conflicts.
    stale = dict(created)
    with pytest.raises(ApiException) as err:
        await custom.replace_namespaced_custom_object(*args, "vcluster", stale)
    assert err.value.status == 409
    current = kube.get("helmcharts", "vcluster", "default")
    assert current is not None
    current["spec"]["chart"] = "other"
    replaced = await custom.replace_namespaced_custom_object(*args, "vcluster", current)
    assert replaced["spec"]["chart"] == "other"
    assert replaced["status"] == {"jobName": "helm-install-vcluster"}


async def test_registered_cluster_scoped_custom_resource(
    kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    kube.register_resource("example.com", "v1alpha1", "widgets", "Widget", namespaced=False)
    body = {"apiVersion": "example.com/v1alpha1", "kind": "Widget", "metadata": {"name": "w"}}
    await custom.create_cluster_custom_object("example.com", "v1alpha1", "widgets", body)
    listed = await custom.list_cluster_custom_object("example.com", "v1alpha1", "widgets")
    assert [w["metadata"]["name"] for w in listed["items"]] == ["w"]
    assert listed["kind"] == "WidgetList"
    await custom.delete_cluster_custom_object("example.com", "v1alpha1", "widgets", "w")
    assert kube.objects("widgets") == []


async def test_webhook_configurations_are_cluster_scoped(api: ApiClient) -> None:
    admission = client.AdmissionregistrationV1Api(api)
    await admission.create_mutating_webhook_configuration(
        {"metadata": {"name": "vcluster-webhook"}, "webhooks": []}
    )
    listed = await admission.list_mutating_webhook_configuration()
    assert [w.metadata.name for w in listed.items] == ["vcluster-webhook"]
    assert (await admission.list_validating_webhook_configuration()).items == []


async def test_apps_and_batch(kube: FakeKubeAPI, api: ApiClient) -> None:
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    spec = {"selector": {"matchLabels": {"app": "x"}}, "template": template}
    await apps.create_namespaced_deployment("default", {"metadata": {"name": "d"}, "spec": spec})
    await apps.create_namespaced_stateful_set(
        "default", {"metadata": {"name": "s"}, "spec": {**spec, "serviceName": "s"}}
    )
    await batch.create_namespaced_job(
        "default", {"metadata": {"name": "j"}, "spec": {"template": template}}
    )
    deployment = await apps.read_namespaced_deployment("d", "default")
    deployment.status = client.V1DeploymentStatus(ready_replicas=1, replicas=1)
    updated = await apps.replace_namespaced_deployment_status("d", "default", deployment)
    assert updated.status.ready_replicas == 1
    assert [
        s.metadata.name for s in (await apps.list_namespaced_stateful_set("default")).items
    ] == ["s"]
    assert [j.metadata.name for j in (await batch.list_job_for_all_namespaces()).items] == ["j"]
    assert (
        kube.request_count[
            ("PUT", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status")
        ]
        == 1
    )


# ------------------------------------------------------------------ deletion rules


async def test_finalizers_hold_deletion(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "held", "finalizers": ["kubebyon.io/cleanup"]}}
    )
    deleted = await core.delete_namespaced_config_map("held", "default")
    assert deleted is not None
    held = await core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["kubebyon.io/cleanup"]

    # Deleting again is idempotent; adding finalizers now is forbidden.
    await core.delete_namespaced_config_map("held", "default")
    with pytest.raises(ApiException) as err:
        await core.patch_namespaced_config_map(
            "held", "default", {"metadata": {"finalizers": ["kubebyon.io/cleanup", "more"]}}
        )
    assert err.value.status == 422

    await core.patch_namespaced_config_map(
        "held", "default", [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_config_map("held", "default")
    assert err.value.status == 404
    assert kube.get("configmaps", "held", "default") is None


async def test_delete_precondition_conflict(core: client.CoreV1Api) -> None:
    await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as err:
        await core.delete_namespaced_config_map(
            "c", "default", body=client.V1DeleteOptions(preconditions={"resourceVersion": "1"})
        )
    assert err.value.status == 409


async def test_namespace_deletion_removes_its_objects(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    await core.create_namespace({"metadata": {"name": "doomed"}})
    await core.create_namespaced_secret("doomed", secret("s"))
    await core.create_namespaced_service(
        "doomed", {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    await core.create_namespaced_secret("default", secret("survivor"))
    await core.delete_namespace("doomed")
    assert kube.objects("secrets", "doomed") == []
    assert kube.objects("services") == []
    assert [s["metadata"]["name"] for s in kube.objects("secrets")] == ["survivor"]


async def test_delete_collection_and_dry_run(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    for name, team in [("a", "x"), ("b", "x"), ("c", "y")]:
        await core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": {"team": team}}}
        )
    dry = await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "dry"}}, dry_run="All"
    )
    assert dry.metadata.uid
    assert kube.get("configmaps", "dry") is None
    await core.delete_collection_namespaced_config_map("default", label_selector="team=x")
    assert [c["metadata"]["name"] for c in kube.objects("configmaps")] == ["c"]


# --------------------------------------------------------------------------- watches


async def test_watch_from_list_resource_version(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    start = (await core.list_namespaced_secret("default")).metadata.resource_version
    await core.create_namespaced_secret("default", secret("w"))
    await core.patch_namespaced_secret("w", "default", {"metadata": {"labels": {"v": "2"}}})
    await core.create_namespaced_secret("kube-system", secret("elsewhere"))
    await core.delete_namespaced_secret("w", "default")

    async with watch.Watch().stream(
        core.list_namespaced_secret, "default", resource_version=start, timeout_seconds=5
    ) as stream:
        events = await collect(stream, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(isinstance(e["object"], client.V1Secret) for e in events)
    assert events[1]["object"].metadata.labels == {"v": "2"}
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs)
    assert rvs[-1] == kube.resource_version


async def test_watch_live_events_and_selector(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "pre", "labels": {"w": "y"}}}
    )
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, "default", label_selector="w=y", timeout_seconds=5
    )
    async with stream:
        # No resourceVersion: current state arrives first as synthetic ADDED events.
        assert [e["object"].metadata.name for e in await collect(stream, 1)] == ["pre"]
        await kube.wait_for_watchers(1, "configmaps")
        await core.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
        await core.create_namespaced_config_map(
            "default", {"metadata": {"name": "live", "labels": {"w": "y"}}}
        )
        # Leaving the selector looks like a delete to this watcher.
        await core.patch_namespaced_config_map(
            "pre", "default", {"metadata": {"labels": {"w": "n"}}}
        )
        events = await collect(stream, 2)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "live"),
        ("DELETED", "pre"),
    ]
    await kube.wait_for(lambda: kube.watch_count == 0)


async def test_watch_custom_objects(kube: FakeKubeAPI, custom: client.CustomObjectsApi) -> None:
    args = ("helm.cattle.io", "v1", "default", "helmcharts")
    start = str(kube.resource_version)
    kube.put_object(
        {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {},
        }
    )
    async with watch.Watch().stream(
        custom.list_namespaced_custom_object, *args, resource_version=start, timeout_seconds=5
    ) as stream:
        (event,) = await collect(stream, 1)
    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == "c"


async def test_watch_bookmarks(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    kube.bookmark_interval = 0.05
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        resource_version=str(kube.resource_version),
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    )
    async with stream:
        (event,) = await collect(stream, 1)
        assert event["type"] == "BOOKMARK"
        assert event["raw_object"]["metadata"]["resourceVersion"] == str(kube.resource_version)
        assert event["raw_object"]["kind"] == "Pod"

        kube.bookmark_interval = 3600
        kube.put_object(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "unrelated", "namespace": "default"},
            }
        )
        kube.send_bookmark()
        (event,) = await collect(stream, 1)
        assert event["type"] == "BOOKMARK"
        # Progress covers events of other kinds the watcher never saw.
        assert event["raw_object"]["metadata"]["resourceVersion"] == str(kube.resource_version)
        assert stream.resource_version == str(kube.resource_version)


async def test_no_bookmarks_unless_asked(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    kube.bookmark_interval = 0.01
    stream = watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        resource_version=str(kube.resource_version),
        timeout_seconds=1,
    )
    async with stream:
        # Watch.stream only connects once iterated, so consume in the background.
        consumer = asyncio.ensure_future(collect(stream, 1))
        await kube.wait_for_watchers(1)
        kube.send_bookmark()
        kube.put_object(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}
        )
        (event,) = await asyncio.wait_for(consumer, DEADLINE)
    assert event["type"] == "ADDED"


async def test_watch_from_compacted_resource_version_is_410(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    old = (await core.list_namespaced_secret("default")).metadata.resource_version
    await core.create_namespaced_secret("default", secret("after"))
    kube.compact()

    # With timeout_seconds the client surfaces the ERROR event as ApiException(410).
    with pytest.raises(ApiException) as err:
        async with watch.Watch().stream(
            core.list_namespaced_secret, "default", resource_version=old, timeout_seconds=5
        ) as stream:
            await collect(stream, 1)
    assert err.value.status == 410
    assert "too old resource version" in err.value.reason

    # Without it (watch forever) kubernetes_asyncio retries a 410 once, then raises.
    kube.reset_request_counts()
    with pytest.raises(ApiException) as err:
        async with watch.Watch().stream(
            core.list_namespaced_secret, "default", resource_version=old
        ) as stream:
            await collect(stream, 1)
    assert err.value.status == 410
    assert kube.request_count[("GET", "/api/v1/namespaces/{namespace}/secrets")] == 2

    # The raw wire format: HTTP 200, then an ERROR event with an Expired Status.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {kube.token}"}) as http:
        url = f"{kube.url}/api/v1/namespaces/default/secrets?watch=1&resourceVersion={old}"
        async with http.get(url) as resp:
            assert resp.status == 200
            line = json.loads(await resp.content.readline())
    assert line["type"] == "ERROR"
    assert line["object"]["code"] == 410
    assert line["object"]["reason"] == "Expired"

    # Watching from the current resourceVersion still works after compaction.
    now = str(kube.resource_version)
    kube.put_object(secret("fresh") | {"metadata": {"name": "fresh", "namespace": "default"}})
    async with watch.Watch().stream(
        core.list_namespaced_secret, "default", resource_version=now, timeout_seconds=5
    ) as stream:
        (event,) = await collect(stream, 1)
    assert event["object"].metadata.name == "fresh"


async def test_watch_timeout_ends_stream(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    stream = watch.Watch().stream(
        core.list_namespaced_secret,
        "default",
        resource_version=str(kube.resource_version),
        timeout_seconds=1,
    )
    async with stream, asyncio.timeout(DEADLINE):
        events = [e async for e in stream]
    assert events == []


async def test_down_drops_open_watches(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    stream = watch.Watch().stream(
        core.list_namespaced_secret,
        "default",
        resource_version=str(kube.resource_version),
        timeout_seconds=30,
    )
    async with stream:
        consumer = asyncio.ensure_future(collect(stream, 1))
        await kube.wait_for_watchers(1)
        kube.down()
        assert await asyncio.wait_for(consumer, DEADLINE) == []  # stream simply ended


# ----------------------------------------------------------------- auth and faults


async def test_wrong_or_missing_token_is_401(kube: FakeKubeAPI) -> None:
    bad = await kube.api_client(token="not-the-token")
    with pytest.raises(ApiException) as err:
        await client.CoreV1Api(bad).list_namespace()
    assert err.value.status == 401
    assert status_body(err.value)["reason"] == "Unauthorized"

    async with aiohttp.ClientSession() as http, http.get(f"{kube.url}/api/v1/namespaces") as resp:
        assert resp.status == 401
        assert (await resp.json())["reason"] == "Unauthorized"


async def test_fail_next_and_down(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    kube.fail_next(2, status=500)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            await core.list_namespace()
        assert err.value.status == 500
        assert status_body(err.value)["reason"] == "InternalError"
    await core.list_namespace()

    kube.fail_next(1, status=429, method="POST", path="/secrets")
    await core.list_namespaced_secret("default")  # not matched
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_secret("default", secret("s"))
    assert err.value.status == 429
    assert err.value.headers["Retry-After"] == "1"
    await core.create_namespaced_secret("default", secret("s"))

    kube.down()
    assert kube.is_down
    with pytest.raises(ApiException) as err:
        await core.read_namespaced_secret("s", "default")
    assert err.value.status == 503
    assert status_body(err.value)["reason"] == "ServiceUnavailable"
    kube.up()
    assert (await core.read_namespaced_secret("s", "default")).metadata.name == "s"


async def test_request_count(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    kube.reset_request_counts()
    await core.create_namespaced_secret("default", secret("a"))
    await core.read_namespaced_secret("a", "default")
    await core.read_namespaced_secret("a", "default")
    with pytest.raises(ApiException):
        await core.read_namespaced_secret("zzz", "default")
    await core.list_secret_for_all_namespaces()
    assert kube.request_count == {
        ("POST", "/api/v1/namespaces/{namespace}/secrets"): 1,
        ("GET", "/api/v1/namespaces/{namespace}/secrets/{name}"): 3,
        ("GET", "/api/v1/secrets"): 1,
    }
    assert sum(kube.request_count.values()) == len(kube.requests) == 5


async def test_wait_for_sees_http_writes(kube: FakeKubeAPI, core: client.CoreV1Api) -> None:
    waiter = asyncio.ensure_future(
        kube.wait_for(lambda: kube.get("configmaps", "late", "default") is not None)
    )
    await core.create_namespaced_config_map("default", {"metadata": {"name": "late"}})
    await asyncio.wait_for(waiter, DEADLINE)
    with pytest.raises(TimeoutError):
        await kube.wait_for(lambda: False, timeout=0.01)


async def test_stop_and_start_keep_port_and_state(
    kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    await core.create_namespaced_secret("default", secret("kept"))
    port = kube.port
    await kube.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await core.read_namespaced_secret("kept", "default")
    await kube.start()
    assert kube.port == port
    assert (await core.read_namespaced_secret("kept", "default")).metadata.name == "kept"


# ------------------------------------------------------------------------ discovery


async def test_discovery(kube: FakeKubeAPI, api: ApiClient) -> None:
    version = await client.VersionApi(api).get_code()
    assert version.git_version == "v1.31.0"
    assert (await client.CoreApi(api).get_api_versions()).versions == ["v1"]
    groups = {g.name: g for g in (await client.ApisApi(api).get_api_versions()).groups}
    assert {"apps", "batch", "helm.cattle.io", "admissionregistration.k8s.io"} <= set(groups)
    assert groups["apps"].preferred_version.group_version == "apps/v1"

    core_resources = {
        r.name: r for r in (await client.CoreV1Api(api).get_api_resources()).resources
    }
    assert core_resources["namespaces"].namespaced is False
    assert core_resources["secrets"].namespaced is True
    assert "nodes/status" in core_resources
    apps = await client.AppsV1Api(api).get_api_resources()
    assert {"deployments", "statefulsets"} <= {r.name for r in apps.resources}
    assert (await client.BatchV1Api(api).get_api_resources()).group_version == "batch/v1"


async def test_https_mode() -> None:
    async with FakeKubeAPI(tls=True) as secure:
        assert secure.url.startswith("https://")
        api = await secure.api_client()  # trusts the fake's self-signed CA
        names = [n.metadata.name for n in (await client.CoreV1Api(api).list_namespace()).items]
    assert names == ["default", "kube-system"]


# -------------------------------------------------------------------------- kubectl


async def run_kubectl(kubeconfig: Path, home: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(home / "cache"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl binary not installed")
async def test_kubectl_against_the_fake(tmp_path: Path) -> None:
    # client-go only sends bearer tokens over TLS, so kubectl needs tls=True.
    async with FakeKubeAPI(tls=True) as kube:
        kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}})
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

        namespaces = json.loads(
            await run_kubectl(kubeconfig, tmp_path, "get", "namespaces", "-o", "json")
        )
        assert [n["metadata"]["name"] for n in namespaces["items"]] == ["default", "kube-system"]

        table = await run_kubectl(kubeconfig, tmp_path, "get", "nodes")
        assert table.splitlines()[0].split() == ["NAME", "AGE"]
        assert table.splitlines()[1].split()[0] == "worker-1"

        await run_kubectl(kubeconfig, tmp_path, "label", "node", "worker-1", "gpu=true")
        assert kube.get("nodes", "worker-1")["metadata"]["labels"] == {"gpu": "true"}

        charts = await run_kubectl(kubeconfig, tmp_path, "get", "helmcharts", "-A")
        assert "No resources found" in charts or charts == ""

        assert kube.request_count[("GET", "/apis")] >= 1
        assert kube.request_count[("GET", "/api/v1")] >= 1
