"""Console node actions (seed "Nodes"): POST …/cordon, …/uncordon, …/drain and
DELETE /api/console/nodes/{id}. The API answers 202 with the operation and job; the job
worker (reconcilers/node_jobs.py) then acts on the host Node in the fake host API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.adapters.kube import Kube
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from tests.api.conftest import MakeUser, User, login
from tests.fakes.kube_api import FakeKubeAPI
from tests.integration.test_drain import worker as drain_worker
from tests.support import wait_until

NODES = "/api/console/nodes"
UNINSTALL = "/usr/local/bin/k3s-agent-uninstall.sh"


async def insert_cluster(
    db: Database, owner: str, name: str = "demo", status: str = "ready"
) -> str:
    cluster_id = new_id("cl")
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib, status) "
        "VALUES ($1, $2, $3, $3, $3, 'v1.31.2', 2000, 2048, 500, 512, $4)",
        cluster_id,
        owner,
        name,
        status,
    )
    return cluster_id


async def insert_node(
    db: Database, cluster_id: str, name: str = "worker-1", status: str = "ready"
) -> str:
    node_id = new_id("node")
    await db.execute(
        "INSERT INTO nodes (id, cluster_id, name, status) VALUES ($1, $2, $3, $4)",
        node_id,
        cluster_id,
        name,
        status,
    )
    return node_id


def host_node(name: str, cluster_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubebyon.io/cluster-id": cluster_id}},
        "spec": {
            "taints": [
                {"key": "kubebyon.io/cluster-id", "value": cluster_id, "effect": "NoSchedule"}
            ]
        },
    }


@pytest.fixture
async def host() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as fake:
        yield fake


@asynccontextmanager
async def worker(db: Database, host: FakeKubeAPI) -> AsyncIterator[None]:
    """The job worker, as ``kubebyon serve`` runs it, on the fake host."""
    kube = Kube(await host.api_client(), attempts=2, backoff=0.01, timeout=5)
    async with drain_worker(db, kube, drain_timeout=10):
        yield


async def finished(db: Database, job_id: str) -> Any:
    async def check() -> Any:
        row = await db.fetchrow(db.q.get_job, job_id)
        return row if row["status"] in ("succeeded", "failed") else None

    return await wait_until(check, what=f"job {job_id} finished")


@pytest.fixture
async def node(services: Services, signed_in: User) -> tuple[str, str]:
    cluster_id = await insert_cluster(services.db, signed_in.id)
    return cluster_id, await insert_node(services.db, cluster_id)


# ------------------------------------------------------------------ actions


async def test_cordon_answers_202_with_an_operation_of_the_nodes_cluster(
    client: TestClient, services: Services, node: tuple[str, str]
) -> None:
    cluster_id, node_id = node
    response = await client.post(f"{NODES}/{node_id}/cordon")
    assert response.status == 202, await response.text()
    body = await response.json()
    assert (body["node_id"], body["node_name"], body["cluster_id"]) == (
        node_id,
        "worker-1",
        cluster_id,
    )
    assert body["action"] == "cordon" and body["note"] is None
    assert body["operation"]["type"] == body["job"]["type"] == "node_cordon"
    assert body["operation"]["status"] == body["job"]["status"] == "pending"
    assert body["job"]["operation_id"] == body["operation"]["id"]
    payload = await services.db.fetchval(
        "SELECT payload FROM cluster_jobs WHERE id = $1", body["job"]["id"]
    )
    assert payload["node_id"] == node_id
    operations = await (await client.get(f"/api/console/clusters/{cluster_id}/operations")).json()
    assert [op["id"] for op in operations["operations"]] == [body["operation"]["id"]]
    assert [job["id"] for job in operations["jobs"]] == [body["job"]["id"]]


async def test_cordon_and_uncordon_change_the_host_node_and_are_audited(
    client: TestClient, services: Services, host: FakeKubeAPI, node: tuple[str, str]
) -> None:
    cluster_id, node_id = node
    db = services.db
    host.put_object(host_node("worker-1", cluster_id))
    async with worker(db, host):
        response = await client.post(f"{NODES}/{node_id}/cordon")
        job = await finished(db, (await response.json())["job"]["id"])
        assert job["status"] == "succeeded", job["last_error"]
        assert host.get("nodes", "worker-1")["spec"]["unschedulable"] is True
        assert await db.fetchval("SELECT unschedulable FROM nodes WHERE id = $1", node_id)

        response = await client.post(f"{NODES}/{node_id}/uncordon")
        job = await finished(db, (await response.json())["job"]["id"])
        assert job["status"] == "succeeded", job["last_error"]
    spec = host.get("nodes", "worker-1")["spec"]
    assert spec["unschedulable"] is False
    assert spec["taints"][0]["key"] == "kubebyon.io/cluster-id"  # nothing else touched
    assert not await db.fetchval("SELECT unschedulable FROM nodes WHERE id = $1", node_id)
    operation = await db.fetchrow(
        "SELECT * FROM cluster_operations WHERE id = $1", job["operation_id"]
    )
    assert (operation["status"], operation["stage"]) == ("succeeded", "done")

    activities = await (await client.get("/api/console/activities")).json()
    node_events = [a for a in activities["activities"] if a["type"].startswith("node_")]
    assert [(a["type"], a["node_name"], a["cluster_id"]) for a in node_events] == [
        ("node_uncordoned", "worker-1", cluster_id),
        ("node_cordoned", "worker-1", cluster_id),
    ]


async def test_delete_drains_then_removes_the_host_node_and_marks_the_snapshot(
    client: TestClient, services: Services, host: FakeKubeAPI, node: tuple[str, str]
) -> None:
    cluster_id, node_id = node
    db = services.db
    host.put_object(host_node("worker-1", cluster_id))
    pod = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "worker-1"}}
    host.put_object({"apiVersion": "v1", "kind": "Pod", **pod})
    response = await client.delete(f"{NODES}/{node_id}")
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["action"] == "delete" and body["operation"]["type"] == "node_delete"
    assert UNINSTALL in body["note"] and "still runs" in body["note"]
    async with worker(db, host):
        job = await finished(db, body["job"]["id"])
    assert job["status"] == "succeeded", job["last_error"]
    assert host.get("nodes", "worker-1") is None
    assert host.get("pods", "web") is None  # drained first
    row = await db.fetchrow("SELECT status, deleted_at FROM nodes WHERE id = $1", node_id)
    assert row["status"] == "deleted" and row["deleted_at"] is not None
    event = await db.fetchrow("SELECT * FROM node_events WHERE node_id = $1", node_id)
    assert (event["type"], event["old_status"], event["new_status"]) == (
        "deleted",
        "ready",
        "deleted",
    )
    assert "after draining it" in event["message"]
    audit = await db.fetchrow(
        "SELECT * FROM audit_events WHERE resource_type = 'node' AND action = 'deleted'"
    )
    assert (audit["resource_id"], audit["node_name"], audit["result"]) == (
        node_id,
        "worker-1",
        "success",
    )
    # A deleted node takes no more actions.
    assert (await client.post(f"{NODES}/{node_id}/cordon")).status == 404


async def test_forced_delete_skips_the_drain(
    client: TestClient, services: Services, host: FakeKubeAPI, node: tuple[str, str]
) -> None:
    cluster_id, node_id = node
    db = services.db
    host.put_object(host_node("worker-1", cluster_id))
    pod = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "worker-1"}}
    host.put_object({"apiVersion": "v1", "kind": "Pod", **pod})
    response = await client.delete(f"{NODES}/{node_id}?force=true")
    assert response.status == 202, await response.text()
    body = await response.json()
    assert UNINSTALL in body["note"]
    async with worker(db, host):
        job = await finished(db, body["job"]["id"])
    assert job["status"] == "succeeded", job["last_error"]
    assert host.get("nodes", "worker-1") is None
    assert host.get("pods", "web") is not None  # not evicted: the machine may be gone
    assert not any("/eviction" in path for _, path in host.requests)
    assert await db.fetchval("SELECT status FROM nodes WHERE id = $1", node_id) == "deleted"


async def test_one_action_at_a_time_but_a_forced_delete_gets_through(
    client: TestClient, node: tuple[str, str]
) -> None:
    _, node_id = node
    assert (await client.post(f"{NODES}/{node_id}/drain")).status == 202
    for method, path in (
        ("POST", f"{NODES}/{node_id}/uncordon"),
        ("POST", f"{NODES}/{node_id}/drain"),
        ("DELETE", f"{NODES}/{node_id}"),
    ):
        response = await client.request(method, path)
        assert response.status == 409, path
        error = (await response.json())["error"]
        assert error["code"] == "node_busy" and "drain" in error["message"]
    assert (await client.delete(f"{NODES}/{node_id}?force=true")).status == 202


# ---------------------------------------------------------------- bad input


async def test_bad_input_and_unknown_nodes(
    client: TestClient, services: Services, signed_in: User, node: tuple[str, str]
) -> None:
    cluster_id, node_id = node
    response = await client.delete(f"{NODES}/{node_id}?force=maybe")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "validation_error"
    for path in (f"{NODES}/node_missing/cordon", f"{NODES}/node_missing/drain"):
        response = await client.post(path)
        assert response.status == 404
        assert (await response.json())["error"] == {
            "code": "not_found",
            "message": "node not found",
        }
    assert (await client.delete(f"{NODES}/node_missing")).status == 404
    assert (await client.get(f"{NODES}/{node_id}/cordon")).status == 405
    deleted = await insert_node(services.db, cluster_id, "worker-0", status="deleted")
    assert (await client.post(f"{NODES}/{deleted}/cordon")).status == 404
    gone = await insert_cluster(services.db, signed_in.id, "gone", status="deleted")
    assert (
        await client.post(f"{NODES}/{await insert_node(services.db, gone, 'w9')}/cordon")
    ).status == 404
    going = await insert_cluster(services.db, signed_in.id, "going", status="deleting")
    response = await client.post(f"{NODES}/{await insert_node(services.db, going, 'w8')}/drain")
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "cluster_deleting"
    assert await services.db.fetchval("SELECT count(*) FROM cluster_jobs") == 0


async def test_anonymous_callers_are_401(client: TestClient, node: tuple[str, str]) -> None:
    _, node_id = node
    client.session.cookie_jar.clear()
    assert (await client.post(f"{NODES}/{node_id}/cordon")).status == 401
    assert (await client.delete(f"{NODES}/{node_id}")).status == 401


# ------------------------------------------------------------ others' nodes


async def grant(
    services: Services, user_id: str, cluster_id: str, resources: list[str], verbs: list[str]
) -> None:
    role_id = await services.db.fetchval(
        "INSERT INTO roles (name, clusters, namespaces, resources, verbs) "
        "VALUES ($1, $2, '{*}', $3, $4) RETURNING id",
        f"role-{new_id('key')}",
        [cluster_id],
        resources,
        verbs,
    )
    await services.db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES ($1, 'user', $2)",
        role_id,
        user_id,
    )
    services.authorizer.invalidate()


async def test_other_users_nodes_are_404_like_unknown_ones(
    client: TestClient, services: Services, make_user: MakeUser
) -> None:
    owner = await make_user()
    cluster_id = await insert_cluster(services.db, owner.id)
    node_id = await insert_node(services.db, cluster_id)
    await login(client, await make_user())
    for method, path in (
        ("POST", f"{NODES}/{node_id}/cordon"),
        ("POST", f"{NODES}/{node_id}/uncordon"),
        ("POST", f"{NODES}/{node_id}/drain"),
        ("DELETE", f"{NODES}/{node_id}"),
        ("DELETE", f"{NODES}/{node_id}?force=true"),
    ):
        response = await client.request(method, path)
        assert response.status == 404, path
        assert (await response.json())["error"] == {
            "code": "not_found",
            "message": "node not found",
        }
    assert await services.db.fetchval("SELECT count(*) FROM cluster_jobs") == 0


async def test_node_actions_need_update_on_nodes_and_delete_needs_delete(
    client: TestClient, services: Services, make_user: MakeUser
) -> None:
    owner = await make_user()
    cluster_id = await insert_cluster(services.db, owner.id)
    node_id = await insert_node(services.db, cluster_id)
    user = await make_user()
    await login(client, user)
    # Reading nodes shows the node exists: 403, not 404.
    await grant(services, user.id, cluster_id, ["nodes"], ["get"])
    assert (await client.post(f"{NODES}/{node_id}/cordon")).status == 403
    # Updating clusters is not updating nodes.
    await grant(services, user.id, cluster_id, ["clusters"], ["get", "update", "delete"])
    assert (await client.post(f"{NODES}/{node_id}/cordon")).status == 403
    await grant(services, user.id, cluster_id, ["nodes"], ["update"])
    response = await client.post(f"{NODES}/{node_id}/cordon")
    assert response.status == 202
    assert (await response.json())["operation"]["requested_by_user_id"] == user.id
    assert (await client.delete(f"{NODES}/{node_id}?force=true")).status == 403
    await grant(services, user.id, cluster_id, ["nodes"], ["delete"])
    assert (await client.delete(f"{NODES}/{node_id}?force=true")).status == 202
