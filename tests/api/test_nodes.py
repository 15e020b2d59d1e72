"""Console nodes and node events (seed §2.4, §2.5, §3.9): what each caller sees of the
snapshot the node reconciler keeps, filters and limits, and 404 for other users' nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from tests.api.conftest import MakeUser, User, login

NODES = "/api/console/nodes"
EVENTS = "/api/console/node-events"
T0 = datetime(2026, 4, 23, 7, 50, tzinfo=UTC)
NODE_FIELDS = {
    "id",
    "cluster_id",
    "name",
    "status",
    "unschedulable",
    "internal_ip",
    "os_image",
    "kubelet_version",
    "container_runtime_version",
    "cpu_allocatable_milli_cores",
    "memory_allocatable_bytes",
    "ephemeral_storage_allocatable_bytes",
    "source",
    "last_seen_at",
    "ready_at",
    "offline_at",
    "created_at",
    "updated_at",
}
EVENT_FIELDS = {
    "id",
    "cluster_id",
    "node_id",
    "node_name",
    "type",
    "old_status",
    "new_status",
    "message",
    "observed_at",
}


# Rows as the node reconciler and the join-token routes write them (shared with the
# overview and node reconciler tests).


async def insert_cluster(
    db: Database, owner: str, name: str = "demo", status: str = "ready"
) -> str:
    cluster_id = new_id("cl")
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, status, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib) "
        "VALUES ($1, $2, $3 || '-' || $1, $3 || '-' || $1, $3 || '-' || $1, $4, 'v1.31.2', "
        "2000, 2048, 500, 512)",
        cluster_id,
        owner,
        name,
        status,
    )
    return cluster_id


async def insert_node(db: Database, cluster_id: str, name: str, status: str = "ready") -> str:
    node_id = new_id("node")
    await db.execute(
        "INSERT INTO nodes (id, cluster_id, name, status, internal_ip, os_image, "
        "kubelet_version, container_runtime_version, cpu_allocatable_milli_cores, "
        "memory_allocatable_bytes, ephemeral_storage_allocatable_bytes, last_seen_at, "
        "ready_at) VALUES ($1, $2, $3, $4, '10.0.0.7', 'Ubuntu 24.04 LTS', 'v1.31.2+k3s1', "
        "'containerd://1.7.22', 1500, 4294967296, 21474836480, $5, $5)",
        node_id,
        cluster_id,
        name,
        status,
        T0,
    )
    return node_id


async def insert_event(
    db: Database,
    node_id: str,
    type_: str = "not_ready",
    *,
    at: datetime = T0,
    event_id: str | None = None,
) -> str:
    event_id = event_id or new_id("nevt")
    await db.execute(
        "INSERT INTO node_events (id, cluster_id, node_id, node_name, type, old_status, "
        "new_status, message, observed_at) SELECT $1, cluster_id, id, name, $3, 'ready', $3, "
        "'Node condition Ready changed to False', $4 FROM nodes WHERE id = $2",
        event_id,
        node_id,
        type_,
        at,
    )
    return event_id


async def insert_token(
    db: Database,
    cluster_id: str,
    creator: str,
    status: str = "active",
    expires_in: timedelta = timedelta(hours=1),
) -> str:
    token_id = new_id("tok")
    short = token_id[-6:]
    await db.execute(
        "INSERT INTO join_tokens (id, cluster_id, value_hash, display_prefix, bootstrap_token_id,"
        " bootstrap_secret_name, status, created_by_user_id, expires_at)"
        " VALUES ($1, $2, $3, 'kbt_' || $4, $4, 'bootstrap-token-' || $4, $5, $6, now() + $7)",
        token_id,
        cluster_id,
        token_id.encode(),
        short,
        status,
        creator,
        expires_in,
    )
    return token_id


async def grant(
    services: Services, user: User, cluster_id: str, resources: list[str], verbs: list[str]
) -> None:
    db = services.db
    role_id = await db.fetchval(
        "INSERT INTO roles (name, clusters, namespaces, resources, verbs) "
        "VALUES ($1, $2, '{*}', $3, $4) RETURNING id",
        new_id("key"),
        [cluster_id],
        resources,
        verbs,
    )
    await db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES ($1, 'user', $2)",
        role_id,
        user.id,
    )
    services.authorizer.invalidate()


async def get_json(client: TestClient, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.json()


async def listed(client: TestClient, path: str = NODES) -> list[str]:
    return [node["name"] for node in (await get_json(client, path))["nodes"]]


# ----------------------------------------------------------------------------- nodes


async def test_the_node_list_shows_the_callers_live_nodes_only(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    alice, bob = await make_user(), await make_user()
    first = await insert_cluster(db, alice.id, "first")
    second = await insert_cluster(db, alice.id, "second")
    gone = await insert_cluster(db, alice.id, "gone", status="deleted")
    await insert_node(db, first, "a-1")
    await insert_node(db, first, "a-0", status="not_ready")
    await insert_node(db, first, "a-old", status="deleted")
    await insert_node(db, second, "b-1", status="offline")
    await insert_node(db, gone, "gone-1")
    await insert_node(db, await insert_cluster(db, bob.id), "bobs")

    await login(client, alice)
    body = await get_json(client, NODES)
    names = [node["name"] for node in body["nodes"]]
    assert sorted(names) == ["a-0", "a-1", "b-1"]
    assert names.index("a-0") < names.index("a-1")  # by name within a cluster
    node = next(n for n in body["nodes"] if n["name"] == "a-1")
    assert set(node) == NODE_FIELDS
    assert node["cluster_id"] == first
    assert node["status"] == "ready"
    assert node["cpu_allocatable_milli_cores"] == 1500
    assert node["memory_allocatable_bytes"] == 4294967296
    assert node["last_seen_at"] == "2026-04-23T07:50:00Z"
    assert (node["source"], node["unschedulable"], node["offline_at"]) == ("host", False, None)

    assert await listed(client, f"{NODES}?cluster_id={second}") == ["b-1"]
    bobs_cluster = await db.fetchval("SELECT id FROM clusters WHERE owner_user_id = $1", bob.id)
    assert await listed(client, f"{NODES}?cluster_id={bobs_cluster}") == []
    assert await listed(client, f"{NODES}?cluster_id=cl_nosuchcluster") == []


async def test_admins_see_every_live_node(
    client: TestClient, make_user: MakeUser, db: Database, admin: User
) -> None:
    owner = await make_user()
    cluster = await insert_cluster(db, owner.id)
    await insert_node(db, cluster, "n-1")
    await insert_node(db, cluster, "n-2", status="deleted")
    assert await listed(client) == ["n-1"]


async def test_one_node_and_404_for_other_users_deleted_or_missing_nodes(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    alice, bob = await make_user(), await make_user()
    cluster = await insert_cluster(db, alice.id)
    mine = await insert_node(db, cluster, "a-1")
    deleted = await insert_node(db, cluster, "a-2", status="deleted")
    in_deleted_cluster = await insert_node(
        db, await insert_cluster(db, alice.id, "gone", status="deleted"), "gone-1"
    )
    bobs = await insert_node(db, await insert_cluster(db, bob.id), "bobs")

    assert (await client.get(f"{NODES}/{mine}")).status == 401
    await login(client, alice)
    body = await get_json(client, f"{NODES}/{mine}")
    assert set(body) == {"node"}
    assert (body["node"]["id"], body["node"]["name"]) == (mine, "a-1")
    missing = await get_json(client, f"{NODES}/node_nosuchnode", 404)
    assert missing == {"error": {"code": "not_found", "message": "node not found"}}
    for other in (bobs, deleted, in_deleted_cluster):
        assert await get_json(client, f"{NODES}/{other}", 404) == missing


async def test_a_role_on_nodes_shows_that_clusters_nodes(
    client: TestClient, make_user: MakeUser, db: Database, services: Services
) -> None:
    owner, viewer, cluster_viewer = await make_user(), await make_user(), await make_user()
    granted = await insert_cluster(db, owner.id, "granted")
    other = await insert_cluster(db, owner.id, "other")
    node = await insert_node(db, granted, "g-1")
    await insert_event(db, node)
    await insert_event(db, await insert_node(db, other, "o-1"))
    await grant(services, viewer, granted, ["nodes"], ["get"])
    await grant(services, cluster_viewer, granted, ["clusters"], ["get"])

    await login(client, viewer)
    assert await listed(client) == ["g-1"]
    assert (await get_json(client, f"{NODES}/{node}"))["node"]["name"] == "g-1"
    assert [e["node_name"] for e in (await get_json(client, EVENTS))["events"]] == ["g-1"]

    await login(client, cluster_viewer)  # may read the cluster, not its nodes
    assert await listed(client) == []
    await get_json(client, f"{NODES}/{node}", 404)
    assert (await get_json(client, EVENTS))["events"] == []


# ----------------------------------------------------------------------------- events


async def test_node_events_newest_first_with_the_seeds_fields(
    client: TestClient, signed_in: User, db: Database
) -> None:
    cluster = await insert_cluster(db, signed_in.id)
    node = await insert_node(db, cluster, "worker-1")
    older = await insert_event(db, node, "joined", at=T0 - timedelta(minutes=5))
    tie_low = await insert_event(db, node, event_id="nevt_00000000000000000000000001")
    tie_high = await insert_event(db, node, event_id="nevt_00000000000000000000000002")
    events = (await get_json(client, EVENTS))["events"]
    assert [e["id"] for e in events] == [tie_high, tie_low, older]
    assert events[0] == {
        "id": tie_high,
        "cluster_id": cluster,
        "node_id": node,
        "node_name": "worker-1",
        "type": "not_ready",
        "old_status": "ready",
        "new_status": "not_ready",
        "message": "Node condition Ready changed to False",
        "observed_at": "2026-04-23T07:50:00Z",
    }
    assert set(events[2]) == EVENT_FIELDS


async def test_node_events_filters(client: TestClient, make_user: MakeUser, db: Database) -> None:
    alice, bob = await make_user(), await make_user()
    first = await insert_cluster(db, alice.id, "first")
    second = await insert_cluster(db, alice.id, "second")
    one = await insert_node(db, first, "one")
    two = await insert_node(db, first, "two", status="deleted")  # its history stays
    three = await insert_node(db, second, "three")
    gone = await insert_node(db, await insert_cluster(db, alice.id, "x", status="deleted"), "x")
    bobs = await insert_node(db, await insert_cluster(db, bob.id), "bobs")
    for node in (one, two, three, gone, bobs):
        await insert_event(db, node, "joined", at=T0 - timedelta(minutes=1))
        await insert_event(db, node, "not_ready")

    async def names(query: str = "") -> list[str]:
        body = await get_json(client, f"{EVENTS}{query}")
        return [f"{e['node_name']}:{e['type']}" for e in body["events"]]

    await login(client, alice)
    everything = await names()
    assert sorted(everything) == sorted(
        f"{n}:{t}" for n in ("one", "two", "three") for t in ("joined", "not_ready")
    )
    assert sorted(await names(f"?cluster_id={first}")) == [
        "one:joined",
        "one:not_ready",
        "two:joined",
        "two:not_ready",
    ]
    assert await names(f"?node_id={three}") == ["three:not_ready", "three:joined"]
    assert sorted(await names("?type=joined")) == ["one:joined", "three:joined", "two:joined"]
    assert await names(f"?cluster_id={first}&node_id={three}") == []
    assert await names(f"?node_id={bobs}") == []
    assert await names("?type=nonsense") == []


async def test_node_events_limit_defaults_to_100_and_is_capped_at_500(
    client: TestClient, signed_in: User, db: Database
) -> None:
    node = await insert_node(db, await insert_cluster(db, signed_in.id), "busy")
    await db.execute(
        "INSERT INTO node_events (id, cluster_id, node_id, node_name, type, observed_at) "
        "SELECT 'nevt_' || lpad(i::text, 26, '0'), cluster_id, id, name, 'ready', "
        "$2::timestamptz - make_interval(secs => i) "
        "FROM nodes, generate_series(1, 520) AS i WHERE id = $1",
        node,
        T0,
    )

    async def count(query: str) -> int:
        return len((await get_json(client, f"{EVENTS}{query}"))["events"])

    assert await count("") == 100
    assert await count("?limit=7") == 7
    assert await count("?limit=500") == 500
    assert await count("?limit=501") == 500
    assert await count("?limit=100000") == 500
    for invalid in ("abc", "0", "-3", "1.5", ""):
        assert await count(f"?limit={invalid}") == 100, invalid
    newest = (await get_json(client, f"{EVENTS}?limit=1"))["events"][0]
    assert newest["id"] == "nevt_" + "1".rjust(26, "0")


async def test_node_routes_need_a_signed_in_caller(client: TestClient) -> None:
    for path in (NODES, f"{NODES}/node_x", EVENTS):
        body = await get_json(client, path, 401)
        assert body["error"]["code"] == "unauthenticated"
