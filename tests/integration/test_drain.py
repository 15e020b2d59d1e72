"""Draining a node (reconcilers/node_jobs.py) on the real job worker and PostgreSQL against
the fake host API: evictions through the Eviction API honour PodDisruptionBudgets,
DaemonSet and mirror pods stay, progress shows in the operation's stage, and a drain that
cannot finish in time fails naming the pods in its way, leaving the node cordoned."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import pytest

from kubebyon.adapters.kube import Kube
from kubebyon.db.audit import Actor
from kubebyon.db.database import Database
from kubebyon.db.desired_state import enqueue_operation
from kubebyon.domain.ids import new_id
from kubebyon.runtime.driver import Runtime
from kubebyon.runtime.jobs import JobLoop
from reconcilers.node_jobs import node_job_handlers
from tests.fakes.kube_api import FakeKubeAPI
from tests.support import wait_until

NODE = "worker-1"
EVICTION = "/api/v1/namespaces/{namespace}/pods/{name}/eviction"
READY = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


@pytest.fixture
async def host() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as fake:
        yield fake


@pytest.fixture
async def kube(host: FakeKubeAPI) -> Kube:
    return Kube(await host.api_client(), attempts=2, backoff=0.01, timeout=5)


@asynccontextmanager
async def worker(db: Database, kube: Kube, *, drain_timeout: float = 15) -> AsyncIterator[None]:
    jobs = JobLoop(
        db,
        node_job_handlers(kube, drain_timeout=drain_timeout, retry_seconds=0.05),
        worker_id="w1",
        lease_seconds=10,
        idle_poll_seconds=0.5,
        max_attempts=3,
        backoff_base=0.05,
        backoff_cap=0.1,
        rng=random.Random(3),
    )
    runtime = Runtime(db, [], extra_loops=[jobs], lease_seconds=10, idle_poll_seconds=0.5)
    await runtime.start()
    try:
        yield
    finally:
        await runtime.stop(grace=5)


async def make_node(db: Database, host: FakeKubeAPI) -> tuple[str, str, str]:
    """(user id, cluster id, node id) of a ready node joined to a cluster."""
    user_id, cluster_id, node_id = new_id("usr"), new_id("cl"), new_id("node")
    await db.execute("INSERT INTO users (id, email) VALUES ($1, $2)", user_id, "o@example.com")
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib, status) "
        "VALUES ($1, $2, 'demo', 'demo', 'demo', 'v1.31.2', 2000, 2048, 500, 512, 'ready')",
        cluster_id,
        user_id,
    )
    await db.execute(
        "INSERT INTO nodes (id, cluster_id, name, status) VALUES ($1, $2, $3, 'ready')",
        node_id,
        cluster_id,
        NODE,
    )
    host.put_object(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubebyon.io/cluster-id": cluster_id}},
        }
    )
    return user_id, cluster_id, node_id


def put_pod(
    host: FakeKubeAPI,
    name: str,
    *,
    node: str = NODE,
    labels: dict[str, str] | None = None,
    owner: str | None = None,
    mirror: bool = False,
) -> None:
    meta: dict[str, Any] = {"name": name, "namespace": "demo", "labels": labels or {"app": name}}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner", "uid": new_id("key")}
        ]
    if mirror:
        meta["annotations"] = {"kubernetes.io/config.mirror": "5f8e3bd0c2"}
    host.put_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": READY,
        }
    )


def put_budget(
    host: FakeKubeAPI, name: str, app: str, status: dict[str, Any] | None = None, **spec: Any
) -> None:
    host.put_object(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
            "status": status or {},
        }
    )


async def drain(db: Database, cluster_id: str, node_id: str, user_id: str) -> str:
    """Ask for a drain as the console route does."""
    async with db.transaction() as conn:
        _, job = await enqueue_operation(
            conn,
            cluster_id=cluster_id,
            operation_type="node_drain",
            requested_by_user_id=user_id,
            payload={"node_id": node_id, "actor": asdict(Actor(user_id, "user", "session"))},
        )
    job_id: str = job["id"]
    return job_id


async def finished(db: Database, job_id: str, timeout: float = 15) -> Any:
    async def check() -> Any:
        row = await db.fetchrow(db.q.get_job, job_id)
        return row if row["status"] in ("succeeded", "failed") else None

    return await wait_until(check, timeout=timeout, what=f"job {job_id} finished")


async def operation(db: Database, job_id: str) -> Any:
    return await db.fetchrow(
        "SELECT o.* FROM cluster_operations o JOIN cluster_jobs j ON j.operation_id = o.id "
        "WHERE j.id = $1",
        job_id,
    )


def evictions(host: FakeKubeAPI, name: str) -> int:
    return sum(
        1
        for method, path in host.requests
        if method == "POST" and path.endswith(f"/pods/{name}/eviction")
    )


async def drain_audits(db: Database) -> list[tuple[str, str, str | None]]:
    rows = await db.fetch(
        "SELECT result, node_name, actor_user_id FROM audit_events "
        "WHERE resource_type = 'node' AND action = 'drained' ORDER BY occurred_at"
    )
    return [(r["result"], r["node_name"], r["actor_user_id"]) for r in rows]


# -------------------------------------------------------------------- drain


async def test_drain_evicts_pods_but_not_daemonset_or_mirror_pods(
    db: Database, host: FakeKubeAPI, kube: Kube
) -> None:
    user_id, cluster_id, node_id = await make_node(db, host)
    put_pod(host, "web-1", owner="ReplicaSet")
    put_pod(host, "web-2", owner="ReplicaSet")
    put_pod(host, "lonely")
    put_pod(host, "fluent-bit", owner="DaemonSet")
    put_pod(host, "kube-proxy-worker-1", mirror=True)
    put_pod(host, "elsewhere", node="worker-2")
    async with worker(db, kube):
        job = await finished(db, await drain(db, cluster_id, node_id, user_id))
    assert job["status"] == "succeeded", job["last_error"]
    assert host.get("nodes", NODE)["spec"]["unschedulable"] is True
    left = {p["metadata"]["name"] for p in host.objects("pods", "demo")}
    assert left == {"fluent-bit", "kube-proxy-worker-1", "elsewhere"}
    assert evictions(host, "fluent-bit") == evictions(host, "kube-proxy-worker-1") == 0
    assert all(evictions(host, name) == 1 for name in ("web-1", "web-2", "lonely"))
    # Evicted through the Eviction API, not deleted.
    assert not any(method == "DELETE" for method, _ in host.requests)
    op = await operation(db, job["id"])
    assert (op["type"], op["status"], op["stage"]) == ("node_drain", "succeeded", "done")
    assert await db.fetchval("SELECT unschedulable FROM nodes WHERE id = $1", node_id)
    assert await drain_audits(db) == [("success", NODE, user_id)]


async def test_drain_retries_while_a_disruption_budget_refuses_until_it_allows(
    db: Database, host: FakeKubeAPI, kube: Kube
) -> None:
    user_id, cluster_id, node_id = await make_node(db, host)
    put_pod(host, "db-0", labels={"app": "db"})
    put_pod(host, "web-1")
    put_pod(host, "web-2")
    put_budget(host, "db", "db", minAvailable=1)  # the only db pod: no disruption allowed
    async with worker(db, kube):
        job_id = await drain(db, cluster_id, node_id, user_id)

        async def progress() -> bool:
            op = await operation(db, job_id)
            return bool(op["stage"] == "evicting 2/3" and evictions(host, "db-0") >= 3)

        await wait_until(progress, what="the drain to evict the others and retry db-0")
        assert (await db.fetchrow(db.q.get_job, job_id))["status"] == "running"
        assert host.get("pods", "db-0", "demo") is not None
        assert (
            host.get("pods", "web-1", "demo") is None and host.get("pods", "web-2", "demo") is None
        )
        put_budget(host, "db", "db", maxUnavailable=1)  # now it allows one
        job = await finished(db, job_id)
    assert job["status"] == "succeeded", job["last_error"]
    assert host.get("pods", "db-0", "demo") is None
    assert (await operation(db, job_id))["status"] == "succeeded"
    assert await drain_audits(db) == [("success", NODE, user_id)]


async def test_a_drain_that_times_out_fails_naming_the_blocking_pods_and_stays_cordoned(
    db: Database, host: FakeKubeAPI, kube: Kube
) -> None:
    user_id, cluster_id, node_id = await make_node(db, host)
    put_pod(host, "db-0", labels={"app": "db"})
    put_pod(host, "web-1")
    put_budget(host, "db", "db", minAvailable="100%")
    async with worker(db, kube, drain_timeout=0.5):
        job = await finished(db, await drain(db, cluster_id, node_id, user_id))
    assert job["status"] == "failed"
    assert job["attempt_count"] == 1  # a timeout is final, not retried
    error = job["last_error"]
    assert "timed out after 0.5s" in error and "stays cordoned" in error
    assert "demo/db-0" in error and "disruption budget" in error
    assert "web-1" not in error  # evicted
    op = await operation(db, job["id"])
    assert (op["status"], op["stage"], op["error_message"]) == ("failed", "evicting 1/2", error)
    assert host.get("nodes", NODE)["spec"]["unschedulable"] is True
    assert host.get("pods", "db-0", "demo") is not None
    audits = await drain_audits(db)
    assert audits == [("failure", NODE, user_id)]


async def test_drain_of_a_node_gone_from_the_host_fails_clearly(
    db: Database, host: FakeKubeAPI, kube: Kube
) -> None:
    user_id, cluster_id, node_id = await make_node(db, host)
    host.delete_object("nodes", NODE)
    async with worker(db, kube):
        job = await finished(db, await drain(db, cluster_id, node_id, user_id))
    assert job["status"] == "failed"
    assert job["last_error"] == f"node {NODE} is no longer on the host"


# ------------------------------------------------- the fake's Eviction API


@pytest.mark.parametrize(
    ("budget", "evictable"),
    [
        ({"minAvailable": 1}, 1),  # 2 healthy, 1 must stay
        ({"minAvailable": "50%"}, 1),
        ({"minAvailable": 2}, 0),
        ({"maxUnavailable": 1}, 1),
        ({"maxUnavailable": "0%"}, 0),
        ({}, 0),  # neither: the stored status.disruptionsAllowed (none)
        ({"status": {"disruptionsAllowed": 1}}, 1),
    ],
)
async def test_the_fake_eviction_api_honours_disruption_budgets(
    host: FakeKubeAPI, kube: Kube, budget: dict[str, Any], evictable: int
) -> None:
    put_pod(host, "a", labels={"app": "x"})
    put_pod(host, "b", labels={"app": "x"})
    put_pod(host, "other", labels={"app": "y"})
    put_budget(host, "x", "x", **budget)
    answers = [await kube.evict(name, "demo") for name in ("a", "b")]
    assert sum(answer is None for answer in answers) == evictable
    refused = [a for a in answers if a is not None]
    assert all(a.startswith("429 TooManyRequests: Cannot evict pod") for a in refused)
    if evictable:
        status = host.get("poddisruptionbudgets", "x", "demo")["status"]
        assert set(status["disruptedPods"]) == {"a"} and status["disruptionsAllowed"] == 0
    assert await kube.evict("other", "demo") is None  # no budget selects it
    assert await kube.evict("missing", "demo") is None  # already gone
    assert host.get("pods", "other", "demo") is None


async def test_the_fake_eviction_api_refuses_pods_under_two_budgets(
    host: FakeKubeAPI, kube: Kube
) -> None:
    put_pod(host, "a", labels={"app": "x"})
    put_budget(host, "one", "x", maxUnavailable=1)
    put_budget(host, "two", "x", maxUnavailable=1)
    answer = await kube.evict("a", "demo")
    assert answer is not None and "more than one PodDisruptionBudget" in answer
