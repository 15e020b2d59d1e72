"""Node health end to end: the nodes reconciler on the real Runtime and PostgreSQL,
watching the fake host Kubernetes API through kubernetes_asyncio, with a clock the test
moves."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubebyon.adapters.kube import Kube
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from kubebyon.metrics import REGISTRY
from kubebyon.runtime.driver import Runtime
from reconcilers.nodes import KEY, NAME, NodesReconciler
from tests.api.test_nodes import insert_cluster, insert_token
from tests.fakes.kube_api import FakeKubeAPI
from tests.support import queue_row, wait_until

GRACE = 600.0
T0 = datetime(2026, 4, 23, 7, 0, tzinfo=UTC)
JSON = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def host_node(
    name: str,
    cluster_id: str,
    *,
    ready: str | None = "True",
    heartbeat: datetime = T0,
    since: datetime = T0,
    token_id: str | None = None,
) -> JSON:
    labels = {"kubebyon.io/cluster-id": cluster_id}
    if token_id is not None:
        labels["kubebyon.io/join-token-id"] = token_id
    status: JSON = {
        "allocatable": {"cpu": "1500m", "memory": "4Gi", "ephemeral-storage": "20971520Ki"},
        "addresses": [
            {"type": "Hostname", "address": name},
            {"type": "InternalIP", "address": "10.0.0.7"},
        ],
        "nodeInfo": {
            "osImage": "Ubuntu 24.04 LTS",
            "kubeletVersion": "v1.31.2+k3s1",
            "containerRuntimeVersion": "containerd://1.7.22",
        },
    }
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": ready,
                "lastHeartbeatTime": stamp(heartbeat),
                "lastTransitionTime": stamp(since),
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": status,
    }


@dataclass
class Env:
    db: Database
    host: FakeKubeAPI
    kube: Kube
    clock: Clock
    owner: str
    cluster: str

    def reconciler(self) -> NodesReconciler:
        return NodesReconciler(self.kube, offline_grace=GRACE, watch_seconds=1, clock=self.clock)

    @asynccontextmanager
    async def running(self, *reconcilers: NodesReconciler) -> AsyncIterator[None]:
        """A Runtime per reconciler (default: one new one), as separate replicas."""
        reconcilers = reconcilers or (self.reconciler(),)
        runtimes = [
            Runtime(
                self.db,
                [rec],
                lease_seconds=10,
                idle_poll_seconds=0.5,
                backoff_base=0.05,
                backoff_cap=0.2,
                rng=random.Random(7),
            )
            for rec in reconcilers
        ]
        for runtime in runtimes:
            await runtime.start()
        try:
            await self.host.wait_for_watchers(1, "nodes")
            yield
        finally:
            for runtime in runtimes:
                await runtime.stop(grace=0.1)

    def put(self, name: str, **options: Any) -> None:
        self.host.put_object(host_node(name, options.pop("cluster_id", self.cluster), **options))

    async def node(self, name: str) -> Any:
        return await self.db.fetchrow(
            "SELECT * FROM nodes WHERE name = $1 ORDER BY created_at DESC LIMIT 1", name
        )

    async def status_of(self, name: str) -> str | None:
        row = await self.node(name)
        return None if row is None else str(row["status"])

    async def reaches(self, name: str, status: str) -> Any:
        await wait_until(lambda: self._has(name, status), timeout=10, what=f"node {name} {status}")
        return await self.node(name)

    async def _has(self, name: str, status: str) -> bool:
        return await self.status_of(name) == status

    async def events(self, name: str) -> list[tuple[str, str | None, str | None, str]]:
        rows = await self.db.fetch(
            "SELECT type, old_status, new_status, message FROM node_events "
            "WHERE node_name = $1 ORDER BY observed_at, id",
            name,
        )
        return [(r["type"], r["old_status"], r["new_status"], r["message"]) for r in rows]

    async def event_types(self, name: str) -> list[str]:
        return [event[0] for event in await self.events(name)]

    async def sessions(self, count: int) -> None:
        """Wait until ``count`` more watch sessions have ended (each ends with a sweep)."""
        for _ in range(count):
            before = (await queue_row(self.db, NAME, KEY))["last_reconciled_at"]

            async def ended(before: Any = before) -> bool:
                row = await queue_row(self.db, NAME, KEY)
                return bool(row["last_reconciled_at"] != before)

            await wait_until(ended, what="a watch session")

    def lists(self) -> int:
        """LIST requests for nodes (a watch is a GET with watch=true)."""
        return sum(
            1
            for method, path in self.host.requests
            if method == "GET" and path.startswith("/api/v1/nodes?") and "watch=true" not in path
        )


async def insert_user(db: Database) -> str:
    user_id = new_id("usr")
    await db.execute(
        "INSERT INTO users (id, email) VALUES ($1, $2)", user_id, f"{user_id}@example.com"
    )
    return user_id


@pytest.fixture
async def env(db: Database) -> AsyncIterator[Env]:
    async with FakeKubeAPI() as host:
        kube = Kube(await host.api_client(), attempts=2, backoff=0.01, timeout=5)
        owner = await insert_user(db)
        cluster = await insert_cluster(db, owner)
        yield Env(db, host, kube, Clock(), owner, cluster)


async def audits(db: Database, resource_type: str, action: str) -> list[Any]:
    return await db.fetch(
        "SELECT * FROM audit_events WHERE resource_type = $1 AND action = $2 ORDER BY id",
        resource_type,
        action,
    )


def unattached(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "kubebyon_node_observations_unattached_total", {"reason": reason}
    )
    return value or 0.0


# ----------------------------------------------------------------------------- tests


async def test_a_node_joining_with_its_labels_is_recorded_and_uses_its_token(env: Env) -> None:
    creator = await insert_user(env.db)
    token = await insert_token(env.db, env.cluster, creator)
    async with env.running():
        env.put("worker-1", token_id=token, since=T0 - timedelta(seconds=30))
        row = await env.reaches("worker-1", "ready")

    assert row["cluster_id"] == env.cluster
    assert row["join_token_id"] == token
    assert row["host_uid"] == env.host.get("nodes", "worker-1")["metadata"]["uid"]
    assert row["cpu_allocatable_milli_cores"] == 1500
    assert row["memory_allocatable_bytes"] == 4 * 2**30
    assert row["ephemeral_storage_allocatable_bytes"] == 20 * 2**30
    assert (row["internal_ip"], row["os_image"]) == ("10.0.0.7", "Ubuntu 24.04 LTS")
    assert row["kubelet_version"] == "v1.31.2+k3s1"
    assert row["container_runtime_version"] == "containerd://1.7.22"
    assert row["last_seen_at"] == T0
    assert row["ready_at"] == T0 - timedelta(seconds=30)
    assert row["source"] == "host"
    assert await env.events("worker-1") == [
        ("joined", None, "ready", "Node joined with status ready")
    ]

    used = await env.db.fetchrow("SELECT * FROM join_tokens WHERE id = $1", token)
    assert (used["status"], used["used_by_node_id"], used["used_at"]) == ("used", row["id"], T0)
    (joined,) = await audits(env.db, "node", "joined")
    assert (joined["resource_id"], joined["cluster_id"], joined["node_name"]) == (
        row["id"],
        env.cluster,
        "worker-1",
    )
    assert joined["actor_user_id"] == creator  # shown in the token creator's activities
    (token_used,) = await audits(env.db, "token", "used")
    assert (token_used["resource_id"], token_used["actor_user_id"]) == (token, creator)
    # The join-token reconciler is asked to remove the token's bootstrap Secret.
    assert await queue_row(env.db, "join_tokens", token) is not None


async def test_a_token_of_another_cluster_or_not_active_is_not_marked_used(env: Env) -> None:
    other_cluster = await insert_cluster(env.db, env.owner, "other")
    foreign = await insert_token(env.db, other_cluster, env.owner)
    revoked = await insert_token(env.db, env.cluster, env.owner, status="revoked")
    async with env.running():
        env.put("worker-1", token_id=foreign)
        env.put("worker-2", token_id=revoked)
        first = await env.reaches("worker-1", "ready")
        second = await env.reaches("worker-2", "ready")
    assert first["join_token_id"] is None
    assert second["join_token_id"] == revoked  # it did join with it
    statuses = await env.db.fetch("SELECT status FROM join_tokens ORDER BY id")
    assert sorted(r["status"] for r in statuses) == ["active", "revoked"]
    assert await audits(env.db, "token", "used") == []


async def test_the_ready_condition_drives_the_status_and_its_events(env: Env) -> None:
    async with env.running():
        env.put("worker-1", ready=None)
        await env.reaches("worker-1", "pending")
        env.put("worker-1", ready="True")
        await env.reaches("worker-1", "ready")
        heartbeat = env.clock.advance(40)
        env.put("worker-1", ready="True", heartbeat=heartbeat)  # a heartbeat, no change
        await wait_until(
            lambda: env.db.fetchval(
                "SELECT last_seen_at = $1 FROM nodes WHERE name = 'worker-1'", heartbeat
            )
        )
        env.put("worker-1", ready="False", heartbeat=heartbeat)
        await env.reaches("worker-1", "not_ready")
        env.put("worker-1", ready="Unknown", heartbeat=heartbeat)
        await env.reaches("worker-1", "unknown")
    assert await env.events("worker-1") == [
        ("joined", None, "pending", "Node joined with status pending"),
        ("ready", "pending", "ready", "Node condition Ready changed to True"),
        ("not_ready", "ready", "not_ready", "Node condition Ready changed to False"),
        ("unknown", "not_ready", "unknown", "Node condition Ready changed to Unknown"),
    ]


async def test_a_node_without_heartbeats_past_the_grace_goes_offline_and_comes_back(
    env: Env,
) -> None:
    async with env.running():
        env.put("worker-1")
        await env.reaches("worker-1", "ready")
        env.clock.advance(GRACE - 5)
        await env.sessions(2)  # the second one swept after the clock moved
        assert await env.status_of("worker-1") == "ready"  # within the grace
        offline_at = env.clock.advance(10)
        row = await env.reaches("worker-1", "offline")
        assert row["offline_at"] == offline_at

        back = env.clock.advance(20)
        env.put("worker-1", heartbeat=back)
        await env.reaches("worker-1", "ready")
    types = await env.events("worker-1")
    assert [t[0] for t in types] == ["joined", "offline", "ready"]
    assert types[1][1:3] == ("ready", "offline")
    (offline,) = await audits(env.db, "node", "offline")
    assert (offline["actor_user_id"], offline["node_name"]) == (env.owner, "worker-1")
    assert offline["cluster_id"] == env.cluster


async def test_an_unreachable_host_does_not_make_nodes_offline(env: Env) -> None:
    async with env.running():
        env.put("worker-1")
        await env.reaches("worker-1", "ready")
        env.host.down()

        async def failed(times: int) -> bool:
            return bool((await queue_row(env.db, NAME, KEY))["attempts"] >= times)

        await wait_until(lambda: failed(1), what="a session failing on the unreachable host")
        later = env.clock.advance(GRACE + 60)  # time passes while the host is unreachable
        env.put("worker-1", heartbeat=later)  # the node kept reporting; nobody could see it
        await wait_until(lambda: failed(3), what="more sessions failing")
        assert await env.status_of("worker-1") == "ready"
        env.host.up()
        await wait_until(
            lambda: env.db.fetchval(
                "SELECT last_seen_at = $1 FROM nodes WHERE name = 'worker-1'", later
            )
        )
        await env.sessions(2)
    assert await env.event_types("worker-1") == ["joined"]


async def test_a_node_deleted_from_the_host_is_marked_deleted(env: Env) -> None:
    async with env.running():
        env.put("worker-1")
        await env.reaches("worker-1", "ready")
        env.host.delete_object("nodes", "worker-1")
        row = await env.reaches("worker-1", "deleted")
    assert row["deleted_at"] == T0
    assert await env.events("worker-1") == [
        ("joined", None, "ready", "Node joined with status ready"),
        ("deleted", "ready", "deleted", "Node removed from the host cluster"),
    ]


async def test_after_410_the_nodes_are_listed_again_without_duplicate_events(env: Env) -> None:
    async with env.running():
        env.put("worker-1")
        env.put("worker-2")
        await env.reaches("worker-1", "ready")
        await env.reaches("worker-2", "ready")
        assert env.lists() == 1
        env.host.down()  # the watch breaks; reconnects fail until up()
        env.put("worker-1", ready="False")  # missed by the watch
        env.host.delete_object("nodes", "worker-2")  # missed by the watch
        env.host.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        env.host.compact()  # the watch's resourceVersion is now too old
        env.host.up()
        await env.reaches("worker-1", "not_ready")
        await env.reaches("worker-2", "deleted")
        await wait_until(lambda: env.host.watch_count >= 1, what="the watch again")
        assert env.lists() == 2
    assert await env.event_types("worker-1") == ["joined", "not_ready"]
    assert await env.event_types("worker-2") == ["joined", "deleted"]
    assert len(await audits(env.db, "node", "joined")) == 2


async def test_bookmarks_move_the_watch_forward_so_no_list_is_needed(env: Env) -> None:
    async with env.running():
        env.put("worker-1")
        await env.reaches("worker-1", "ready")
        for name in ("a", "b", "c"):  # changes the node watch does not see
            env.host.put_object(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        env.host.send_bookmark()
        current = str(env.host.resource_version)

        async def resumes_from_current() -> bool:
            position = await env.db.fetchval("SELECT resource_version FROM node_watch")
            return bool(position == current)

        await wait_until(resumes_from_current, what="the bookmark's resourceVersion")
        env.host.compact()
        env.put("worker-1", ready="False")
        await env.reaches("worker-1", "not_ready")
    assert env.lists() == 1  # without the bookmark the watch would have hit 410
    assert await env.event_types("worker-1") == ["joined", "not_ready"]


async def test_a_label_naming_an_unknown_or_deleted_cluster_attaches_nothing(env: Env) -> None:
    gone = await insert_cluster(env.db, env.owner, "gone")
    unknown_before, deleted_before = unattached("unknown_cluster"), unattached("deleted_cluster")
    async with env.running():
        env.put("worker-1", cluster_id=gone)
        await env.reaches("worker-1", "ready")
        await env.db.execute("UPDATE clusters SET status = 'deleted' WHERE id = $1", gone)
        env.put("stray", cluster_id="cl_nosuchcluster")
        env.put("worker-1", cluster_id=gone, heartbeat=env.clock.advance(30))
        await env.reaches("worker-1", "deleted")
        await wait_until(lambda: unattached("unknown_cluster") > unknown_before)
        env.put("fine")  # observed after "stray": the watch got past it
        await env.reaches("fine", "ready")
    assert await env.node("stray") is None
    assert unattached("deleted_cluster") > deleted_before
    assert await env.events("worker-1") == [
        ("joined", None, "ready", "Node joined with status ready"),
        ("deleted", "ready", "deleted", "Node left the cluster"),
    ]
    attached = await env.db.fetchval(
        "SELECT count(*) FROM nodes WHERE cluster_id = $1", env.cluster
    )
    assert attached == 1  # "fine"


async def test_a_node_moved_to_another_cluster_leaves_the_first(env: Env) -> None:
    second = await insert_cluster(env.db, env.owner, "second")
    async with env.running():
        env.put("worker-1")
        await env.reaches("worker-1", "ready")
        env.put("worker-1", cluster_id=second)
        await wait_until(
            lambda: env.db.fetchval(
                "SELECT count(*) FROM nodes WHERE name = 'worker-1' AND cluster_id = $1", second
            )
        )
    rows = await env.db.fetch(
        "SELECT cluster_id, status FROM nodes WHERE name = 'worker-1' ORDER BY created_at"
    )
    assert [(r["cluster_id"], r["status"]) for r in rows] == [
        (env.cluster, "deleted"),
        (second, "ready"),
    ]


async def test_replicas_taking_turns_record_each_transition_once(env: Env) -> None:
    first, second = env.reconciler(), env.reconciler()
    # The watch changes hands, then both run (one of them watches at a time): each resumes
    # where the other stopped, never replaying onto newer rows what it saw before.
    turns = [
        ((first,), ("True", "False")),
        ((second,), ("True", "False")),
        ((first,), ("True",)),
        ((first, second), ("False", "True")),
    ]
    for replicas, flips in turns:
        async with env.running(*replicas):
            for ready in flips:
                env.put("worker-1", ready=ready)
                await env.reaches("worker-1", "ready" if ready == "True" else "not_ready")
            await env.sessions(2)
    assert await env.event_types("worker-1") == [
        "joined",
        "not_ready",
        "ready",
        "not_ready",
        "ready",
        "not_ready",
        "ready",
    ]
    assert env.lists() == 1


async def test_a_thousand_status_changes_are_absorbed(env: Env) -> None:
    names = [f"worker-{i}" for i in range(100)]
    async with env.running():
        for name in names:
            env.put(name)
        for flip in range(10):
            for name in names:
                env.put(name, ready="False" if flip % 2 == 0 else "True")

        async def absorbed() -> bool:
            count = await env.db.fetchval("SELECT count(*) FROM node_events")
            return bool(count == len(names) * 11)

        await wait_until(absorbed, timeout=60, what="1,000 status changes and 100 joins")
    statuses = await env.db.fetch("SELECT DISTINCT status FROM nodes")
    assert [r["status"] for r in statuses] == ["ready"]
    per_type = dict(
        await env.db.fetch("SELECT type, count(*) FROM node_events GROUP BY type ORDER BY type")
    )
    assert per_type == {"joined": 100, "not_ready": 500, "ready": 500}
