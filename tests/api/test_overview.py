"""The console overview: counts of what the caller may see, recent activity, and a fixed
number of queries whatever the size."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from kubebyon.db import audit
from kubebyon.db.database import Database
from tests.api.conftest import MakeUser, User, login
from tests.api.test_nodes import get_json, insert_cluster, insert_node, insert_token

OVERVIEW = "/api/console/overview"


async def test_the_overview_counts_what_the_caller_may_see(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    alice, bob, admin = await make_user(), await make_user(), await make_user(role="admin")
    ready = await insert_cluster(db, alice.id, "ready")
    other = await insert_cluster(db, alice.id, "other")
    await insert_cluster(db, alice.id, "new", status="provisioning")
    gone = await insert_cluster(db, alice.id, "gone", status="deleted")
    for name, status in (("a", "ready"), ("b", "not_ready"), ("c", "offline"), ("d", "deleted")):
        await insert_node(db, ready, name, status)
    await insert_node(db, other, "e")
    await insert_node(db, gone, "f")
    await insert_token(db, ready, alice.id)
    await insert_token(db, other, alice.id)
    await insert_token(db, ready, alice.id, expires_in=timedelta(seconds=-1))  # not yet swept
    await insert_token(db, ready, alice.id, status="used")
    await insert_token(db, gone, alice.id)
    bobs = await insert_cluster(db, bob.id, "bobs", status="error")
    await insert_node(db, bobs, "g", "unknown")
    await insert_token(db, bobs, bob.id)

    await login(client, alice)
    body = await get_json(client, OVERVIEW)
    assert set(body) == {"clusters", "nodes", "tokens", "activities"}
    assert body["clusters"] == {
        "total": 3,
        "by_status": {"provisioning": 1, "ready": 2, "error": 0, "deleting": 0},
    }
    assert body["nodes"] == {
        "total": 4,
        "by_status": {"pending": 0, "ready": 2, "not_ready": 1, "unknown": 0, "offline": 1},
    }
    assert body["tokens"] == {"active": 2}

    await login(client, admin)
    body = await get_json(client, OVERVIEW)
    assert body["clusters"]["total"] == 4
    assert body["clusters"]["by_status"]["error"] == 1
    assert body["nodes"]["total"] == 5
    assert body["nodes"]["by_status"]["unknown"] == 1
    assert body["tokens"] == {"active": 3}


async def test_recent_activity_is_the_callers_own_and_everyones_for_admins(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    alice, bob, admin = await make_user(), await make_user(), await make_user(role="admin")
    cluster = await insert_cluster(db, alice.id)
    async with db.transaction() as conn:  # as the node reconciler records a join for alice
        await audit.record(
            conn,
            audit.Actor(alice.id, "system", "system"),
            resource_type="node",
            action="joined",
            message="Node worker-1 joined cluster demo",
            cluster_id=cluster,
            cluster_name="demo",
            node_name="worker-1",
        )
    await login(client, bob)
    await login(client, alice)

    activities = (await get_json(client, OVERVIEW))["activities"]
    assert [a["type"] for a in activities] == ["session_login", "node_joined"]
    joined = activities[1]
    assert (joined["cluster_id"], joined["node_name"]) == (cluster, "worker-1")
    assert joined["relative_time"]

    await login(client, admin)
    activities = (await get_json(client, OVERVIEW))["activities"]
    assert [a["type"] for a in activities] == [
        "session_login",
        "session_login",
        "session_login",
        "node_joined",
    ]


async def test_the_overview_needs_a_signed_in_caller(client: TestClient) -> None:
    body = await get_json(client, OVERVIEW, 401)
    assert body["error"]["code"] == "unauthenticated"


async def test_the_overview_takes_a_fixed_number_of_queries(
    client: TestClient,
    signed_in: User,
    make_user: MakeUser,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The system viewer role names every cluster ("*"): each is looked at.
    await db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES (2, 'user', $1)",
        signed_in.id,
    )
    stranger = await make_user()
    statements: list[str] = []

    def counting(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(sql: str, *args: Any) -> Any:
            statements.append(sql)
            return await method(sql, *args)

        return wrapper

    async def grow(count: int) -> None:
        for owner in (signed_in, stranger):
            clusters = await db.fetch(
                "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name,"
                " status, kubernetes_version, workload_cpu_limit_milli_cores,"
                " workload_memory_limit_mib, control_plane_cpu_request_milli_cores,"
                " control_plane_memory_request_mib)"
                " SELECT 'cl_' || md5(random()::text), $1, 'c', md5(random()::text),"
                " md5(random()::text), 'ready', 'v1.31.2', 2000, 4096, 100, 512"
                " FROM generate_series(1, $2) RETURNING id",
                owner.id,
                count,
            )
            await db.execute(
                "INSERT INTO nodes (id, cluster_id, name, status)"
                " SELECT 'node_' || md5(random()::text), c, md5(random()::text), 'ready'"
                " FROM unnest($1::text[]) AS c, generate_series(1, 2)",
                [r["id"] for r in clusters],
            )

    async def count_overview(clusters: int) -> int:
        statements.clear()
        body = await get_json(client, OVERVIEW)
        assert body["clusters"]["total"] == clusters
        assert body["nodes"]["total"] == 2 * clusters
        return len(statements)

    await grow(5)
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        monkeypatch.setattr(db, name, counting(getattr(db, name)))
    await count_overview(10)  # fills the cache of roles
    small = await count_overview(10)
    await grow(495)
    assert await count_overview(1000) == small
    assert small == 4, statements  # the principal, readable clusters, counts, activities
