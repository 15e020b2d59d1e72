"""Node health: the nodes reconciler absorbing 1,000 node status changes, in node events
written per second, against a bare INSERT loop.

Reconciler phase: a fresh database with one cluster, ``FakeKubeAPI`` (the host) with
``NODES`` labelled nodes, and the real ``NodesReconciler`` over the real
``kubernetes_asyncio`` watch. A first session lists the nodes (their ``joined`` events);
then, with the next session's watch open, ``CHANGES`` Ready flips are made on the host
(every node in turn, ``CHANGES / NODES`` times) and the clock stops when the last of their
events is committed. Each change is one watch event, one transaction (the watch position's
compare-and-set, the node row locked, its cluster read, the snapshot updated, the event
inserted). The fake runs in this process, so the reconciler's side includes its CPU.

Baseline phase: the same number of ``node_events`` rows inserted one statement at a time
(autocommit) on one connection: the least a writer that records each event durably does.

Both phases alternate ``rounds`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bench.common import Outcome, Postgres, out
from kubebyon.adapters.kube import Kube
from kubebyon.db.database import Database, connect
from kubebyon.domain.ids import new_id
from kubebyon.runtime.contract import Context
from reconcilers.nodes import KEY, NodesReconciler

# The fake is test code, imported on purpose (tests/ is a package; the product never
# imports it).
from tests.fakes.kube_api import FakeKubeAPI

NODES = 100
CHANGES = 1_000
DEADLINE_SECONDS = 60.0
TARGET_RATIO = 0.1
TARGET_EVENTS_PER_SECOND = 300.0


def node(name: str, cluster_id: str, ready: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubebyon.io/cluster-id": cluster_id}},
        "status": {
            "allocatable": {"cpu": "2", "memory": "4Gi"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "lastHeartbeatTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        },
    }


async def seed_cluster(db: Database) -> str:
    user_id, cluster_id = new_id("usr"), new_id("cl")
    await db.execute("INSERT INTO users (id, email) VALUES ($1, $1 || '@example.com')", user_id)
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, status, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib) "
        "VALUES ($1, $2, 'bench', 'bench', 'bench', 'ready', 'v1.31.2', 2000, 2048, 500, 512)",
        cluster_id,
        user_id,
    )
    return cluster_id


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(DEADLINE_SECONDS):
        while not await predicate():  # noqa: ASYNC110 - the rows have no event to await
            await asyncio.sleep(0.005)


async def stop(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_reconciler(pg: Postgres) -> float:
    """Seconds to absorb CHANGES status changes."""
    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("nodes")
        stack.push_async_callback(pg.drop_database, dsn)
        db = await Database.open(dsn)
        stack.push_async_callback(db.close)
        host = await stack.enter_async_context(FakeKubeAPI())
        kube = Kube(await host.api_client(), timeout=30)
        cluster_id = await seed_cluster(db)
        names = [f"worker-{i:03d}" for i in range(NODES)]
        for name in names:
            host.put_object(node(name, cluster_id, "True"))
        reconciler = NodesReconciler(kube, offline_grace=3600, watch_seconds=1)
        await reconciler.reconcile(KEY, Context(db=db, key=KEY, attempt=0))  # lists: joined

        async def events() -> int:
            count: int = await db.fetchval("SELECT count(*) FROM node_events")
            return count

        assert await events() == NODES, "the first session should have seen every node"
        reconciler.watch_seconds = int(DEADLINE_SECONDS)
        session = asyncio.create_task(reconciler.reconcile(KEY, Context(db=db, key=KEY, attempt=0)))
        stack.push_async_callback(stop, session)
        await host.wait_for_watchers(1, "nodes")
        started = time.perf_counter()
        for i in range(CHANGES):
            host.put_object(
                node(names[i % NODES], cluster_id, "False" if i // NODES % 2 == 0 else "True")
            )
            if i % NODES == NODES - 1:
                await asyncio.sleep(0)  # let the watch stream run while the host changes

        async def absorbed() -> bool:
            return await events() == NODES + CHANGES

        await until(absorbed)
        return time.perf_counter() - started


async def run_bare(pg: Postgres) -> float:
    """Seconds for CHANGES single-row INSERTs into node_events."""
    async with contextlib.AsyncExitStack() as stack:
        dsn = await pg.fresh_database("nodes_bare")
        stack.push_async_callback(pg.drop_database, dsn)
        db = await Database.open(dsn)
        stack.push_async_callback(db.close)
        cluster_id = await seed_cluster(db)
        node_id = new_id("node")
        await db.execute(
            "INSERT INTO nodes (id, cluster_id, name) VALUES ($1, $2, 'bare')", node_id, cluster_id
        )
        conn = await connect(dsn)
        stack.push_async_callback(conn.close)
        started = time.perf_counter()
        for i in range(CHANGES):
            await conn.execute(
                "INSERT INTO node_events (id, cluster_id, node_id, node_name, type, old_status,"
                " new_status, message) VALUES ($1, $2, $3, 'bare', 'not_ready', 'ready',"
                " 'not_ready', 'Node condition Ready changed to False')",
                f"nevt_{i:026d}",
                cluster_id,
                node_id,
            )
        return time.perf_counter() - started


async def run(pg: Postgres, rounds: int) -> Outcome:
    outcome = Outcome("nodes: status changes absorbed", "reconciler / bare events/s")
    out(f"{NODES} nodes, {CHANGES} Ready flips through one watch; baseline: {CHANGES} INSERTs")
    rates: dict[str, list[float]] = {"bare": [], "reconciler": []}
    for i in range(rounds):
        order = ("bare", "reconciler") if i % 2 == 0 else ("reconciler", "bare")
        for phase in order:
            seconds = await (run_bare(pg) if phase == "bare" else run_reconciler(pg))
            rates[phase].append(CHANGES / seconds)
            rate = rates[phase][-1]
            out(f"  round {i + 1}/{rounds} {phase:<10} {seconds:6.3f} s = {rate:6.0f} events/s")
    best_bare, best = max(rates["bare"]), max(rates["reconciler"])
    outcome.ratio = best / best_bare
    out(f"  best of {rounds}: reconciler {best:.0f} events/s, bare {best_bare:.0f} events/s")
    outcome.target(
        f"reconciler >= {TARGET_RATIO:.0%} of bare",
        outcome.ratio >= TARGET_RATIO,
        f"{outcome.ratio:.0%}",
    )
    outcome.target(
        f"reconciler >= {TARGET_EVENTS_PER_SECOND:.0f} events/s",
        best >= TARGET_EVENTS_PER_SECOND,
        f"{best:.0f} events/s",
    )
    return outcome
