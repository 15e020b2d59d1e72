"""Console clusters (seed: Clusters, §2.1, §2.6, §2.7, §3.1, §3.2, §3.4, §3.5): bodies
copied from the seed, responses checked field by field, against a real database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db import audit
from kubebyon.db.database import Database
from kubebyon.domain.ratelimit import SlidingWindowLimiter
from kubebyon.domain.system_settings import SystemSettings
from tests.api.conftest import MakeUser, User, login

CLUSTERS = "/api/console/clusters"
ADMIN_JOBS = "/api/console/admin/cluster-jobs"

# Seed §3.1, verbatim.
SEED_CREATE: dict[str, Any] = {
    "name": "demo",
    "vcluster_name": "demo",
    "namespace": "demo",
    "control_plane_host": "203.0.113.10",
    "kubernetes_version": "v1.31.2",
    "workload_cpu_limit_milli_cores": 2000,
    "workload_memory_limit_mib": 4096,
    "control_plane_cpu_request_milli_cores": 100,
    "control_plane_memory_request_mib": 512,
}
# Seed §3.2, verbatim.
SEED_UPDATE: dict[str, Any] = {
    "public_access_enabled": True,
    "public_access_mode": "loadbalancer",
    "control_plane_host": "api.demo.example.com",
    "managed_workload_ingress_enabled": True,
}
# Seed §2.1, plus backend, owner_user_id and deleted_at.
CLUSTER_FIELDS = frozenset(
    (
        "id",
        "name",
        "namespace",
        "vcluster_name",
        "control_plane_host",
        "kubernetes_version",
        "workload_cpu_limit_milli_cores",
        "workload_memory_limit_mib",
        "control_plane_cpu_request_milli_cores",
        "control_plane_memory_request_mib",
        "public_access_enabled",
        "public_access_mode",
        "public_access_port",
        "managed_workload_ingress_enabled",
        "managed_workload_ingress_status",
        "managed_workload_ingress_class",
        "managed_workload_ingress_last_error",
        "managed_workload_ingress_cname_target",
        "managed_workload_ingress_dns_status",
        "managed_workload_ingress_dns_message",
        "managed_workload_ingress_dns_last_synced_at",
        "managed_workload_ingress_dns_last_error",
        "managed_workload_ingress_dns_last_error_at",
        "api_endpoint",
        "status",
        "connection_status",
        "kubeconfig_available",
        "kubeconfig_available_at",
        "last_observed_at",
        "last_error_message",
        "created_at",
        "updated_at",
        "backend",
        "owner_user_id",
        "deleted_at",
    )
)
# Seed §2.6.
OPERATION_FIELDS = frozenset(
    (
        "id",
        "cluster_id",
        "type",
        "status",
        "stage",
        "requested_by_user_id",
        "error_message",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
)
# Seed §2.6 and §2.7.
JOB_FIELDS = frozenset(
    (
        "id",
        "cluster_id",
        "operation_id",
        "type",
        "status",
        "attempt_count",
        "published_at",
        "leased_until",
        "worker_id",
        "last_error",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
)
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters:\n- name: demo\n"


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body: dict[str, Any] = (await response.json())["error"]
    return body


async def create(client: TestClient, **changes: Any) -> dict[str, Any]:
    """The seed's body with ``changes``; namespace follows vcluster_name."""
    namespace = changes.get("vcluster_name", SEED_CREATE["vcluster_name"])
    response = await client.post(CLUSTERS, json={**SEED_CREATE, "namespace": namespace, **changes})
    assert response.status == 201, await response.text()
    cluster: dict[str, Any] = (await response.json())["cluster"]
    return cluster


async def listed_ids(client: TestClient) -> list[str]:
    response = await client.get(CLUSTERS)
    assert response.status == 200, await response.text()
    return [c["id"] for c in (await response.json())["clusters"]]


async def mark_deleted(db: Database, cluster_id: str) -> None:
    """What the vcluster reconciler does once the host resources are gone."""
    await db.execute(
        "UPDATE clusters SET status='deleted', deleted_at=now() WHERE id=$1", cluster_id
    )


async def history(db: Database, cluster_id: str) -> tuple[list[Any], list[Any]]:
    operations = await db.fetch(
        "SELECT * FROM cluster_operations WHERE cluster_id=$1 ORDER BY created_at, id", cluster_id
    )
    jobs = await db.fetch(
        "SELECT * FROM cluster_jobs WHERE cluster_id=$1 ORDER BY created_at, id", cluster_id
    )
    return operations, jobs


async def cluster_audit(db: Database, cluster_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT action, result FROM audit_events WHERE resource_type='cluster' AND resource_id=$1"
        " ORDER BY occurred_at, id",
        cluster_id,
    )
    return [row["action"] if row["result"] == "success" else f"{row['action']}!" for row in rows]


# --- create, read, list ---------------------------------------------------------------


async def test_create_with_the_seed_body(client: TestClient, signed_in: User, db: Database) -> None:
    response = await client.post(CLUSTERS, json=SEED_CREATE)
    assert response.status == 201, await response.text()
    cluster = (await response.json())["cluster"]
    assert set(cluster) == CLUSTER_FIELDS
    assert cluster["id"].startswith("cl_")
    for name, value in SEED_CREATE.items():
        assert cluster[name] == value, name
    assert cluster["status"] == "provisioning"
    assert cluster["connection_status"] == "pending"
    assert cluster["backend"] == "vcluster"
    assert cluster["owner_user_id"] == signed_in.id
    # Published on control_plane_host by default: the seed hands out https://<host>:<port>.
    assert cluster["public_access_enabled"] is True
    assert cluster["public_access_mode"] == "nodeport"
    assert cluster["managed_workload_ingress_enabled"] is False
    assert cluster["managed_workload_ingress_status"] == "disabled"
    assert cluster["managed_workload_ingress_dns_status"] == "not_managed"
    assert cluster["managed_workload_ingress_cname_target"] is None
    assert cluster["kubeconfig_available"] is False
    assert cluster["api_endpoint"] is None
    assert cluster["deleted_at"] is None
    assert cluster["created_at"].endswith("Z")

    # Desired state, operation, job, wake-up and audit event, together.
    assert await db.fetchval("SELECT generation FROM clusters WHERE id=$1", cluster["id"]) == 1
    operations, jobs = await history(db, cluster["id"])
    assert [(o["type"], o["status"], o["requested_by_user_id"]) for o in operations] == [
        ("cluster_create", "pending", signed_in.id)
    ]
    assert [(j["type"], j["status"], j["payload"], j["operation_id"]) for j in jobs] == [
        ("cluster_create", "pending", {"generation": 1}, operations[0]["id"])
    ]
    due = await db.fetchval(
        "SELECT due_at <= now() FROM reconcile_queue WHERE reconciler='vcluster' AND key=$1",
        cluster["id"],
    )
    assert due is True
    event = await db.fetchrow(
        "SELECT * FROM audit_events WHERE resource_type='cluster' AND resource_id=$1",
        cluster["id"],
    )
    assert event["action"] == "create_requested"
    assert event["actor_user_id"] == signed_in.id
    assert (event["cluster_id"], event["cluster_name"]) == (cluster["id"], "demo")

    got = await client.get(f"{CLUSTERS}/{cluster['id']}")
    assert got.status == 200
    assert (await got.json())["cluster"] == cluster


async def test_vcluster_name_and_namespace_default(client: TestClient, signed_in: User) -> None:
    body = {k: v for k, v in SEED_CREATE.items() if k not in ("vcluster_name", "namespace")}
    response = await client.post(CLUSTERS, json={**body, "name": "shop"})
    assert response.status == 201, await response.text()
    cluster = (await response.json())["cluster"]
    assert (cluster["vcluster_name"], cluster["namespace"]) == ("shop", "shop")
    cluster = await create(client, name="shop2", vcluster_name="shop-vc", namespace=None)
    assert (cluster["vcluster_name"], cluster["namespace"]) == ("shop-vc", "shop-vc")


async def test_list_is_newest_first_and_only_live(
    client: TestClient, signed_in: User, db: Database
) -> None:
    ids = [(await create(client, name=f"c{i}", vcluster_name=f"c{i}"))["id"] for i in range(3)]
    assert await listed_ids(client) == ids[::-1]
    await mark_deleted(db, ids[1])
    assert await listed_ids(client) == [ids[2], ids[0]]
    body = await (await client.get(CLUSTERS)).json()
    assert set(body) == {"clusters"}
    assert all(set(c) == CLUSTER_FIELDS for c in body["clusters"])


async def test_cname_target_follows_the_base_domain(
    client: TestClient, signed_in: User, services: Services
) -> None:
    cluster = await create(client)
    assert cluster["managed_workload_ingress_cname_target"] is None
    for base, expected in (
        ("apps.example.com", f"demo-{cluster['id'][-8:]}.apps.example.com"),
        ("not a domain", None),
    ):
        async with services.db.transaction() as conn:
            await services.system_settings.put(
                conn, SystemSettings(managed_workload_ingress_base_domain=base), None
            )
        services.system_settings.invalidate()
        got = (await (await client.get(f"{CLUSTERS}/{cluster['id']}")).json())["cluster"]
        assert got["managed_workload_ingress_cname_target"] == expected
        listed = (await (await client.get(CLUSTERS)).json())["clusters"]
        assert listed[0]["managed_workload_ingress_cname_target"] == expected


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Demo"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": "demo_1"}, "name"),
        ({"vcluster_name": "-demo", "namespace": None}, "vcluster_name"),
        ({"vcluster_name": "v" * 51, "namespace": None}, "vcluster_name"),
        ({"vcluster_name": "9lives", "namespace": None}, "vcluster_name"),
        ({"namespace": "other"}, "namespace"),
        ({"kubernetes_version": "v1.20.0"}, "kubernetes_version"),
        ({"workload_cpu_limit_milli_cores": 0}, "workload_cpu_limit_milli_cores"),
        ({"workload_cpu_limit_milli_cores": 10**9}, "workload_cpu_limit_milli_cores"),
        ({"workload_memory_limit_mib": -1}, "workload_memory_limit_mib"),
        ({"control_plane_cpu_request_milli_cores": 1}, "control_plane_cpu_request_milli_cores"),
        ({"control_plane_memory_request_mib": 10**7}, "control_plane_memory_request_mib"),
        ({"control_plane_host": "203.0.113.10:6443"}, "control_plane_host"),
        ({"control_plane_host": "https://api.example.com"}, "control_plane_host"),
        ({"public_access_mode": "ingress"}, "public_access_mode"),
        # Wrong types: no coercion of strings, floats or booleans.
        ({"workload_cpu_limit_milli_cores": "2000"}, "workload_cpu_limit_milli_cores"),
        ({"workload_memory_limit_mib": 4096.5}, "workload_memory_limit_mib"),
        ({"control_plane_memory_request_mib": True}, "control_plane_memory_request_mib"),
        ({"public_access_enabled": "yes"}, "public_access_enabled"),
        ({"name": 7}, "name"),
        ({"name": None}, "name"),
        # Unknown or read-only fields are refused by name.
        ({"status": "ready"}, "status"),
        ({"public_access_port": 30443}, "public_access_port"),
        ({"owner_user_id": "usr_x"}, "owner_user_id"),
    ],
)
async def test_create_rules(
    client: TestClient, signed_in: User, db: Database, changes: dict[str, Any], field: str
) -> None:
    error = await error_of(await client.post(CLUSTERS, json={**SEED_CREATE, **changes}), 400)
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}:")
    assert error["details"][0]["field"] == field
    assert await db.fetchval("SELECT count(*) FROM clusters") == 0
    assert await db.fetchval("SELECT count(*) FROM cluster_jobs") == 0


@pytest.mark.parametrize("missing", ["name", "kubernetes_version", "workload_memory_limit_mib"])
async def test_required_fields(client: TestClient, signed_in: User, missing: str) -> None:
    body = {k: v for k, v in SEED_CREATE.items() if k != missing}
    error = await error_of(await client.post(CLUSTERS, json=body), 400)
    assert error["message"].startswith(f"{missing}:")


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"demo"', b"\xff"])
async def test_malformed_bodies(client: TestClient, signed_in: User, raw: bytes) -> None:
    response = await client.post(CLUSTERS, data=raw, headers={"Content-Type": "application/json"})
    await error_of(response, 400)


async def test_vcluster_name_is_unique_among_live_clusters(
    client: TestClient, signed_in: User, make_user: MakeUser, db: Database
) -> None:
    first = await create(client)
    other = await make_user()
    await login(client, other)
    # Another user, another display name: the host namespace is still taken.
    response = await client.post(CLUSTERS, json={**SEED_CREATE, "name": "mine"})
    error = await error_of(response, 409)
    assert error["code"] == "vcluster_name_taken"
    assert error["message"].startswith("vcluster_name:")
    assert await db.fetchval("SELECT count(*) FROM cluster_jobs") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE resource_type='cluster'") == 1
    # Still taken while the first one is being deleted; free once it is deleted.
    await db.execute("UPDATE clusters SET status='deleting' WHERE id=$1", first["id"])
    await error_of(await client.post(CLUSTERS, json=SEED_CREATE), 409)
    await mark_deleted(db, first["id"])
    second = await create(client)
    assert second["vcluster_name"] == "demo" and second["id"] != first["id"]


async def test_a_failure_rolls_back_the_whole_write(
    client: TestClient, signed_in: User, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("audit store down")

    cluster = await create(client)
    monkeypatch.setattr(audit, "record", broken)  # the last step of every write
    other = {**SEED_CREATE, "vcluster_name": "b", "namespace": "b"}
    assert (await client.post(CLUSTERS, json=other)).status == 500
    assert (await client.put(f"{CLUSTERS}/{cluster['id']}", json=SEED_UPDATE)).status == 500
    assert (await client.delete(f"{CLUSTERS}/{cluster['id']}")).status == 500
    monkeypatch.undo()

    rows = await db.fetch("SELECT * FROM clusters")
    assert [(r["id"], r["generation"], r["status"]) for r in rows] == [
        (cluster["id"], 1, "provisioning")
    ]
    assert rows[0]["public_access_mode"] == "nodeport"  # the PUT was not applied
    assert await db.fetchval("SELECT count(*) FROM cluster_operations") == 1
    assert await db.fetchval("SELECT count(*) FROM cluster_jobs") == 1
    assert await db.fetchval("SELECT generation FROM reconcile_queue") == 1
    assert await cluster_audit(db, cluster["id"]) == ["create_requested"]


# --- update ----------------------------------------------------------------------------


async def test_update_with_the_seed_body(client: TestClient, signed_in: User, db: Database) -> None:
    cluster = await create(client)
    response = await client.put(f"{CLUSTERS}/{cluster['id']}", json=SEED_UPDATE)
    assert response.status == 200, await response.text()
    updated = (await response.json())["cluster"]
    for name, value in SEED_UPDATE.items():
        assert updated[name] == value, name
    assert updated["managed_workload_ingress_status"] == "provisioning"
    assert updated["status"] == "provisioning"  # convergence is asynchronous
    unchanged = {"name", "vcluster_name", "kubernetes_version", "workload_cpu_limit_milli_cores"}
    assert {k: updated[k] for k in unchanged} == {k: cluster[k] for k in unchanged}
    got = (await (await client.get(f"{CLUSTERS}/{cluster['id']}")).json())["cluster"]
    assert got == updated

    assert await db.fetchval("SELECT generation FROM clusters WHERE id=$1", cluster["id"]) == 2
    operations, jobs = await history(db, cluster["id"])
    assert [o["type"] for o in operations] == ["cluster_create", "cluster_update"]
    assert [(j["type"], j["payload"]) for j in jobs] == [
        ("cluster_create", {"generation": 1}),
        ("cluster_update", {"generation": 2}),
    ]
    assert jobs[1]["operation_id"] == operations[1]["id"]
    assert await cluster_audit(db, cluster["id"]) == [
        "create_requested",
        "settings_update_requested",
    ]
    extra = await db.fetchval(
        "SELECT extra FROM audit_events WHERE action='settings_update_requested'"
    )
    # public_access_enabled was already on (control_plane_host given at creation).
    changed = {k: v for k, v in SEED_UPDATE.items() if k != "public_access_enabled"}
    assert extra == {"generation": 2, "changes": changed}

    # Resources, then managed ingress off again.
    response = await client.put(
        f"{CLUSTERS}/{cluster['id']}",
        json={
            "workload_cpu_limit_milli_cores": 4000,
            "control_plane_memory_request_mib": 1024,
            "managed_workload_ingress_enabled": False,
            "control_plane_host": None,
        },
    )
    updated = (await response.json())["cluster"]
    assert updated["workload_cpu_limit_milli_cores"] == 4000
    assert updated["control_plane_memory_request_mib"] == 1024
    assert updated["managed_workload_ingress_status"] == "disabled"
    assert updated["control_plane_host"] is None
    assert updated["public_access_mode"] == "loadbalancer"
    assert await db.fetchval("SELECT generation FROM clusters WHERE id=$1", cluster["id"]) == 3


async def test_an_update_that_changes_nothing_records_nothing(
    client: TestClient, signed_in: User, db: Database
) -> None:
    cluster = await create(client)
    for body in (
        {},
        {"workload_cpu_limit_milli_cores": 2000, "control_plane_host": "203.0.113.10"},
    ):
        response = await client.put(f"{CLUSTERS}/{cluster['id']}", json=body)
        assert response.status == 200
        assert (await response.json())["cluster"] == cluster
    assert await db.fetchval("SELECT generation FROM clusters") == 1
    assert await db.fetchval("SELECT count(*) FROM cluster_jobs") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "renamed"}, "name"),
        ({"vcluster_name": "other"}, "vcluster_name"),
        ({"namespace": "other"}, "namespace"),
        ({"kubernetes_version": "v1.32.1"}, "kubernetes_version"),
        ({"public_access_port": 30443}, "public_access_port"),
        ({"status": "ready"}, "status"),
        ({"workload_cpu_limit_milli_cores": 1}, "workload_cpu_limit_milli_cores"),
        ({"workload_memory_limit_mib": None}, "workload_memory_limit_mib"),
        ({"public_access_enabled": None}, "public_access_enabled"),
        ({"public_access_mode": "ingress"}, "public_access_mode"),
        ({"control_plane_host": "bad host"}, "control_plane_host"),
        ({"managed_workload_ingress_enabled": 1}, "managed_workload_ingress_enabled"),
    ],
)
async def test_update_accepts_only_the_seed_fields(
    client: TestClient, signed_in: User, db: Database, body: dict[str, Any], field: str
) -> None:
    cluster = await create(client)
    request = {"public_access_enabled": True, **body}  # a valid field does not save the rest
    error = await error_of(await client.put(f"{CLUSTERS}/{cluster['id']}", json=request), 400)
    assert error["message"].startswith(f"{field}:")
    got = (await (await client.get(f"{CLUSTERS}/{cluster['id']}")).json())["cluster"]
    assert got == cluster
    assert await db.fetchval("SELECT count(*) FROM cluster_jobs") == 1


# --- delete ----------------------------------------------------------------------------


async def test_delete_is_soft(client: TestClient, signed_in: User, db: Database) -> None:
    cluster = await create(client)
    url = f"{CLUSTERS}/{cluster['id']}"
    response = await client.delete(url)
    assert response.status == 202, await response.text()
    deleting = (await response.json())["cluster"]
    assert deleting["status"] == "deleting"
    assert deleting["deleted_at"] is None
    # Still visible while the host resources go away; no more changes meanwhile.
    assert (await (await client.get(url)).json())["cluster"]["status"] == "deleting"
    assert await listed_ids(client) == [cluster["id"]]
    assert (await error_of(await client.put(url, json=SEED_UPDATE), 409))["code"] == (
        "cluster_deleting"
    )
    await error_of(await client.delete(url), 409)

    operations, jobs = await history(db, cluster["id"])
    assert [o["type"] for o in operations] == ["cluster_create", "cluster_delete"]
    assert jobs[-1]["payload"] == {"generation": 2}
    assert await cluster_audit(db, cluster["id"]) == ["create_requested", "delete_requested"]

    await mark_deleted(db, cluster["id"])
    for response in (
        await client.get(url),
        await client.put(url, json=SEED_UPDATE),
        await client.delete(url),
        await client.get(f"{url}/operations"),
    ):
        assert (await error_of(response, 404))["message"] == "cluster not found"
    assert await listed_ids(client) == []
    # History stays.
    operations, jobs = await history(db, cluster["id"])
    assert len(operations) == len(jobs) == 2
    assert len(await cluster_audit(db, cluster["id"])) == 2


async def test_deleting_the_account_deletes_its_clusters(
    client: TestClient, signed_in: User, db: Database
) -> None:
    first = await create(client)
    second = await create(client, name="two", vcluster_name="two")
    await client.delete(f"{CLUSTERS}/{second['id']}")  # already on its way: left as it is
    response = await client.delete("/api/console/me", json={"password": signed_in.password})
    assert response.status == 200, await response.text()
    rows = await db.fetch("SELECT id, status, generation FROM clusters ORDER BY created_at")
    assert [(r["status"], r["generation"]) for r in rows] == [("deleting", 2), ("deleting", 2)]
    for cluster in (first, second):
        operations, _ = await history(db, cluster["id"])
        assert [o["type"] for o in operations] == ["cluster_create", "cluster_delete"]
        assert (await cluster_audit(db, cluster["id"]))[-1] == "delete_requested"


# --- operations and jobs --------------------------------------------------------------


async def test_operations_newest_first(client: TestClient, signed_in: User) -> None:
    cluster = await create(client)
    url = f"{CLUSTERS}/{cluster['id']}"
    await client.put(url, json=SEED_UPDATE)
    await client.delete(url)
    response = await client.get(f"{url}/operations")
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"operations", "jobs"}
    assert [o["type"] for o in body["operations"]] == [
        "cluster_delete",
        "cluster_update",
        "cluster_create",
    ]
    assert [j["type"] for j in body["jobs"]] == [o["type"] for o in body["operations"]]
    assert all(set(o) == OPERATION_FIELDS for o in body["operations"])
    assert all(set(j) == JOB_FIELDS for j in body["jobs"])
    assert [j["operation_id"] for j in body["jobs"]] == [o["id"] for o in body["operations"]]
    first = body["operations"][-1]
    assert (first["status"], first["stage"], first["cluster_id"]) == (
        "pending",
        "queued",
        cluster["id"],
    )


async def insert_jobs(db: Database, count: int, *, cluster_id: str = "cl_x", **cols: Any) -> None:
    status = cols.get("status", "pending")
    await db.execute(
        "INSERT INTO cluster_jobs (id, cluster_id, type, status, created_at) "
        "SELECT 'job_' || $4 || lpad(i::text, 6, '0'), $1, 'cluster_update', $2,"
        " now() - make_interval(secs => i) FROM generate_series(1, $3) AS i",
        cluster_id,
        status,
        count,
        f"{cluster_id}_{status}_",
    )


async def admin_jobs(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    response = await client.get(f"{ADMIN_JOBS}{query}")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == {"jobs"}
    jobs: list[dict[str, Any]] = body["jobs"]
    return jobs


async def test_admin_cluster_jobs_limits(client: TestClient, admin: User, db: Database) -> None:
    await insert_jobs(db, 600)
    assert len(await admin_jobs(client)) == 100
    for query, expected in (
        ("?limit=7", 7),
        ("?limit=500", 500),
        ("?limit=501", 500),
        ("?limit=100000", 500),
        ("?limit=0", 100),
        ("?limit=-3", 100),
        ("?limit=abc", 100),
        ("?limit=2.5", 100),
        ("?limit=", 100),
    ):
        assert len(await admin_jobs(client, query)) == expected, query


async def test_admin_cluster_jobs_order_and_filters(
    client: TestClient, admin: User, db: Database
) -> None:
    await insert_jobs(db, 3, cluster_id="cl_a")
    await insert_jobs(db, 2, cluster_id="cl_b", status="failed")
    # Same created_at: the id breaks the tie, descending.
    await db.execute(
        "INSERT INTO cluster_jobs (id, cluster_id, type, created_at) VALUES "
        "('job_tie_1', 'cl_c', 'cluster_create', now() + interval '1 hour'),"
        "('job_tie_2', 'cl_c', 'cluster_create', now() + interval '1 hour')"
    )
    jobs = await admin_jobs(client)
    assert all(set(j) == JOB_FIELDS for j in jobs)
    assert [j["id"] for j in jobs[:2]] == ["job_tie_2", "job_tie_1"]
    stamps = [(j["created_at"], j["id"]) for j in jobs]
    assert stamps == sorted(stamps, reverse=True)
    assert {j["cluster_id"] for j in await admin_jobs(client, "?cluster_id=cl_a")} == {"cl_a"}
    assert len(await admin_jobs(client, "?cluster_id=cl_a")) == 3
    failed = await admin_jobs(client, "?status=failed")
    assert [j["cluster_id"] for j in failed] == ["cl_b", "cl_b"]
    assert await admin_jobs(client, "?status=failed&cluster_id=cl_a") == []
    assert len(await admin_jobs(client, "?status=&cluster_id=")) == 7
    error = await error_of(await client.get(f"{ADMIN_JOBS}?status=stuck"), 400)
    assert error["message"].startswith("status:")


async def test_admin_cluster_jobs_is_for_admins(client: TestClient, signed_in: User) -> None:
    await error_of(await client.get(ADMIN_JOBS), 403)
    client.session.cookie_jar.clear()
    await error_of(await client.get(ADMIN_JOBS), 401)


# --- kubeconfig ------------------------------------------------------------------------


async def ready_with_kubeconfig(db: Database, services: Services, cluster_id: str) -> None:
    await db.execute(
        "UPDATE clusters SET status='ready', kubeconfig_available=true,"
        " kubeconfig_available_at=now(), api_endpoint='https://203.0.113.10:30443',"
        " kubeconfig_encrypted=$2 WHERE id=$1",
        cluster_id,
        services.secrets.encrypt(KUBECONFIG),
    )


async def test_kubeconfig(
    client: TestClient, signed_in: User, db: Database, services: Services
) -> None:
    cluster = await create(client)
    url = f"{CLUSTERS}/{cluster['id']}/kubeconfig"
    password = {"password": signed_in.password}
    error = await error_of(await client.post(url, json=password), 409)
    assert error["code"] == "kubeconfig_pending"

    await ready_with_kubeconfig(db, services, cluster["id"])
    response = await client.post(url, json=password)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "api_endpoint": "https://203.0.113.10:30443",
        "kubeconfig": KUBECONFIG,
        "version": "v1.31.2",
    }

    response = await client.post(f"{url}?download=1", json=password)
    assert response.status == 200
    assert response.content_type == "application/yaml"
    assert response.headers["Content-Disposition"] == 'attachment; filename="demo-kubeconfig.yaml"'
    assert await response.text() == KUBECONFIG

    rows = await db.fetch(
        "SELECT * FROM audit_events WHERE action='kubeconfig_read' ORDER BY occurred_at, id"
    )
    assert [(r["result"], r["extra"]) for r in rows] == [
        ("success", {"download": False}),
        ("success", {"download": True}),
    ]
    for row in rows:
        assert row["cluster_id"] == cluster["id"]
        assert "kind: Config" not in str(dict(row))
        assert signed_in.password not in str(dict(row))


async def test_kubeconfig_errors(
    client: TestClient, signed_in: User, db: Database, services: Services
) -> None:
    services.auth_limiter = SlidingWindowLimiter(window=30, burst=100, max_entries=100)
    cluster = await create(client)
    await ready_with_kubeconfig(db, services, cluster["id"])
    url = f"{CLUSTERS}/{cluster['id']}/kubeconfig"
    # 400: missing body, malformed JSON, no password.
    for kwargs in (
        {},
        {"data": b"{", "headers": {"Content-Type": "application/json"}},
        {"json": {}},
        {"json": {"password": ""}},
        {"json": {"password": 123}},
    ):
        await error_of(await client.post(url, **kwargs), 400)
    # 401: wrong password (audited as a failure, without the attempt).
    error = await error_of(await client.post(url, json={"password": "not-my-password"}), 401)
    assert error["code"] == "invalid_credentials"
    assert await cluster_audit(db, cluster["id"]) == ["create_requested", "kubeconfig_read!"]
    assert "not-my-password" not in str(await db.fetch("SELECT * FROM audit_events"))
    # 405: GET on the console path; 404: the removed legacy path.
    await error_of(await client.get(url), 405)
    legacy = await client.post(
        f"/api/clusters/{cluster['id']}/kubeconfig", json={"password": signed_in.password}
    )
    await error_of(legacy, 404)
    await error_of(await client.get(f"/api/clusters/{cluster['id']}/kubeconfig"), 404)
    # 404: unknown cluster.
    await error_of(await client.post(f"{CLUSTERS}/cl_nope/kubeconfig", json={"password": "x"}), 404)
    # 409: being deleted.
    await client.delete(f"{CLUSTERS}/{cluster['id']}")
    await error_of(await client.post(url, json={"password": signed_in.password}), 409)
    # 401: anonymous.
    client.session.cookie_jar.clear()
    await error_of(await client.post(url, json={"password": signed_in.password}), 401)


async def test_kubeconfig_password_attempts_are_rate_limited(
    client: TestClient, signed_in: User, db: Database, services: Services
) -> None:
    services.auth_limiter = SlidingWindowLimiter(window=30, burst=3, max_entries=100)
    cluster = await create(client)
    await ready_with_kubeconfig(db, services, cluster["id"])
    url = f"{CLUSTERS}/{cluster['id']}/kubeconfig"
    for _ in range(3):
        await error_of(await client.post(url, json={"password": "guess"}), 401)
    response = await client.post(url, json={"password": signed_in.password})
    await error_of(response, 429)
    assert int(response.headers["Retry-After"]) > 0


async def test_kubeconfig_needs_a_password_on_the_account(
    client: TestClient, signed_in: User, db: Database, services: Services
) -> None:
    cluster = await create(client)
    await ready_with_kubeconfig(db, services, cluster["id"])
    await db.execute("UPDATE users SET password_hash=NULL WHERE id=$1", signed_in.id)
    url = f"{CLUSTERS}/{cluster['id']}/kubeconfig"
    error = await error_of(await client.post(url, json={"password": signed_in.password}), 409)
    assert error["code"] == "password_not_set"


# --- who sees what ---------------------------------------------------------------------


def every_route(cluster_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    url = f"{CLUSTERS}/{cluster_id}"
    return [
        ("GET", url, None),
        ("PUT", url, SEED_UPDATE),
        ("GET", f"{url}/operations", None),
        ("POST", f"{url}/kubeconfig", {"password": "correct-horse-battery"}),
        ("GET", f"{url}/control-plane-metrics/history?window=1h", None),
        ("DELETE", url, None),
    ]


async def test_other_users_clusters_are_not_found(
    client: TestClient, make_user: MakeUser, db: Database, services: Services
) -> None:
    owner, stranger, admin = await make_user(), await make_user(), await make_user(role="admin")
    await login(client, owner)
    cluster = await create(client)
    await ready_with_kubeconfig(db, services, cluster["id"])
    await login(client, stranger)
    assert await listed_ids(client) == []
    for method, url, body in every_route(cluster["id"]):
        response = await client.request(method, url, json=body)
        assert (await error_of(response, 404))["message"] == "cluster not found", (method, url)
    for method, url, body in every_route("cl_does_not_exist") + every_route("..%2f"):
        await error_of(await client.request(method, url, json=body), 404)
    assert await db.fetchval("SELECT status FROM clusters") == "ready"

    # Platform admins see and act on every cluster, including ones without an owner.
    await db.execute(
        "INSERT INTO clusters (id, backend, name, namespace, vcluster_name, kubernetes_version,"
        " workload_cpu_limit_milli_cores, workload_memory_limit_mib,"
        " control_plane_cpu_request_milli_cores, control_plane_memory_request_mib)"
        " VALUES ('cl_imported', 'imported', 'bcs', 'bcs', 'bcs', 'v1.31.2', 1, 1, 1, 1)"
    )
    await login(client, admin)
    assert set(await listed_ids(client)) == {cluster["id"], "cl_imported"}
    imported = (await (await client.get(f"{CLUSTERS}/cl_imported")).json())["cluster"]
    assert imported["backend"] == "imported" and imported["owner_user_id"] is None
    error = await error_of(await client.put(f"{CLUSTERS}/cl_imported", json=SEED_UPDATE), 409)
    assert error["code"] == "cluster_imported"
    for method, url, body in every_route(cluster["id"]):
        if method == "POST":
            body = {"password": admin.password}
        response = await client.request(method, url, json=body)
        assert response.status in (200, 202), (method, url, await response.text())


async def grant(db: Database, user: User, cluster_id: str, verbs: list[str]) -> None:
    role_id = await db.fetchval(
        "INSERT INTO roles (name, clusters, namespaces, resources, verbs)"
        " VALUES ($1, $2, '{*}', '{*}', $3) RETURNING id",
        f"role-{user.id}",
        [cluster_id],
        verbs,
    )
    await db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES ($1, 'user', $2)",
        role_id,
        user.email,
    )


async def test_authorization_grants(
    client: TestClient, make_user: MakeUser, db: Database, services: Services
) -> None:
    owner, viewer, editor = await make_user(), await make_user(), await make_user()
    await login(client, owner)
    shared = await create(client, name="shared", vcluster_name="shared")
    private = await create(client, name="private", vcluster_name="private")
    await ready_with_kubeconfig(db, services, shared["id"])
    await grant(db, viewer, shared["id"], ["get", "log"])
    await grant(db, editor, shared["id"], ["*"])

    await login(client, viewer)
    assert await listed_ids(client) == [shared["id"]]
    url = f"{CLUSTERS}/{shared['id']}"
    assert (await client.get(url)).status == 200
    assert (await client.get(f"{url}/operations")).status == 200
    await error_of(await client.put(url, json=SEED_UPDATE), 403)
    await error_of(await client.delete(url), 403)
    # The kubeconfig is the cluster's admin credential: read access is not enough.
    await error_of(await client.post(f"{url}/kubeconfig", json={"password": viewer.password}), 403)
    await error_of(await client.get(f"{CLUSTERS}/{private['id']}"), 404)

    await login(client, editor)
    assert await listed_ids(client) == [shared["id"]]
    assert (await client.put(url, json=SEED_UPDATE)).status == 200
    response = await client.post(f"{url}/kubeconfig", json={"password": editor.password})
    assert response.status == 200
    assert (await client.delete(url)).status == 202

    # The system viewer role names every cluster ("*"): the listing looks at all of them.
    await db.execute(
        "INSERT INTO role_assignments (role_id, subject_type, subject) VALUES (2, 'user', $1)",
        owner.id,
    )
    stranger_cluster = await make_user()
    await login(client, stranger_cluster)
    third = await create(client, name="third", vcluster_name="third")
    await login(client, owner)
    assert await listed_ids(client) == [third["id"], private["id"], shared["id"]]


async def test_listing_1000_clusters_takes_a_fixed_number_of_queries(
    client: TestClient,
    signed_in: User,
    db: Database,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services.system_settings.ttl = 3600  # its cache expiring would count as one more query
    statements: list[str] = []

    def counting(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(sql: str, *args: Any) -> Any:
            statements.append(sql)
            return await method(sql, *args)

        return wrapper

    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        monkeypatch.setattr(db, name, counting(getattr(db, name)))

    def transaction() -> Any:
        statements.append("transaction")
        return type(db).transaction(db)

    monkeypatch.setattr(db, "transaction", transaction)

    async def insert(count: int, start: int) -> None:
        await db.execute(
            "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name,"
            " kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib,"
            " control_plane_cpu_request_milli_cores, control_plane_memory_request_mib, created_at)"
            " SELECT 'cl_' || lpad(i::text, 26, '0'), $1, 'c' || i, 'c' || i, 'c' || i,"
            " 'v1.31.2', 2000, 4096, 100, 512, now() + make_interval(secs => i)"
            " FROM generate_series($2::int, $3::int) AS i",
            signed_in.id,
            start,
            start + count - 1,
        )

    async def count_list(expected: int) -> int:
        statements.clear()
        response = await client.get(CLUSTERS)
        assert response.status == 200
        clusters = (await response.json())["clusters"]
        assert len(clusters) == expected
        assert clusters[0]["name"] == f"c{expected}"  # newest first
        return len(statements)

    await insert(10, 1)
    cold = await count_list(10)  # fills the caches of roles and system settings
    assert cold <= 4, statements
    small = await count_list(10)
    await insert(990, 11)
    assert await count_list(1000) == small
    assert small == 2, statements  # the principal, the list


# --- control-plane metrics -------------------------------------------------------------


async def test_control_plane_metrics_history(
    client: TestClient, signed_in: User, db: Database
) -> None:
    cluster = await create(client)
    url = f"{CLUSTERS}/{cluster['id']}/control-plane-metrics/history"

    async def sample(ago: str, resolution: int, cpu: float, at: str | None = None) -> None:
        await db.execute(
            "INSERT INTO control_plane_samples (cluster_id, sampled_at, resolution_seconds,"
            " cpu_millicores, memory_bytes, api_latency_ms, available)"
            f" VALUES ($1, {at or 'now()'} - $2::text::interval, $3, $4, 1e9, 12.5, 1.0)",
            cluster["id"],
            ago,
            resolution,
            cpu,
        )

    await sample("10 minutes", 0, 10)
    await sample("2 hours", 0, 20)
    await sample("5 hours", 0, 30)
    await sample("20 hours", 300, 40)
    await sample("3 days", 3600, 50)
    await sample("8 days", 3600, 90)  # older than every window
    # Two samples in one 5-minute bucket are averaged into one point.
    bucket = "date_bin('5 minutes', now() - interval '12 hours', TIMESTAMPTZ '2000-01-01')"
    await sample("-10 seconds", 0, 60, at=bucket)
    await sample("-70 seconds", 0, 80, at=bucket)

    async def points(window: str | None) -> list[dict[str, Any]]:
        query = "" if window is None else f"?window={window}"
        response = await client.get(url + query)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["window"] == (window or "1h")
        result: list[dict[str, Any]] = body["points"]
        return result

    one_hour = await points("1h")
    assert one_hour == [
        {
            "at": one_hour[0]["at"],
            "cpu_millicores": 10,
            "memory_bytes": 1e9,
            "api_latency_ms": 12.5,
            "availability": 1.0,
        }
    ]
    assert await points(None) == one_hour
    assert [p["cpu_millicores"] for p in await points("6h")] == [30, 20, 10]
    assert [p["cpu_millicores"] for p in await points("24h")] == [40, 70, 30, 20, 10]
    assert (await points("24h"))[1]["at"].endswith(":00Z")  # the bucket's start
    seven_days = [p["cpu_millicores"] for p in await points("7d")]
    assert seven_days[0] == 50 and 90 not in seven_days and len(seven_days) == 6
    at = [p["at"] for p in await points("24h")]
    assert at == sorted(at)

    for bad in ("2h", "1H", "all"):
        error = await error_of(await client.get(f"{url}?window={bad}"), 400)
        assert error["message"].startswith("window:")
