"""A cluster registered through the bk-bcs user-manager API is an imported KubeBYON
cluster: admins see it in the console, the agent's credentials become its kubeconfig
(encrypted) and the connection reconciler reports whether it answers; bk-bcs grants show
it (or a KubeBYON cluster) read-only to the linked account."""

from __future__ import annotations

import base64
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from kubebyon.runtime.contract import Context
from kubebyon.runtime.driver import Runtime
from kubebyon.settings import Settings
from reconcilers.connection import NAME as CONNECTION
from reconcilers.connection import ConnectionReconciler
from reconcilers.vcluster import VClusterReconciler
from tests.api.conftest import MakeUser, User, login
from tests.api.test_bcs import grant, make_bcs_user, ok, refused, register, single
from tests.api.test_clusters import SEED_CREATE, SEED_UPDATE
from tests.fakes.kube_api import FakeKubeAPI
from tests.support import queue_row, wait_until

CLUSTERS = "/api/console/clusters"
CLUSTER_ID = "BCS-K8S-001"
CREDENTIALS = f"/clusters/{CLUSTER_ID}/credentials"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.imported-sa-token.s1gn4ture"  # what the fake cluster accepts


def ca_of(fake: FakeKubeAPI) -> str:
    """The PEM CA that a cluster agent reports: the fake's self-signed certificate."""
    encoded = fake.kubeconfig_dict()["clusters"][0]["cluster"]["certificate-authority-data"]
    return base64.b64decode(encoded).decode()


@pytest.fixture
def settings() -> Settings:
    # These tests sign in as several people; the fake cluster listens on loopback, which
    # credentials may name only when the operator allows it.
    return Settings(auth_rate_limit_burst=50, bcs_allow_loopback_server_addresses=True)


@pytest.fixture
async def imported_api() -> AsyncIterator[FakeKubeAPI]:
    """The API server of the cluster a bk-bcs agent registers, over TLS."""
    fake = FakeKubeAPI(tls=True, token=TOKEN, git_version="v1.30.4")
    async with fake:
        yield fake


@pytest.fixture
async def platform_admin(make_user: MakeUser) -> User:
    return await make_user(role="admin")


@pytest.fixture
async def root(client: TestClient, platform_admin: User) -> str:
    """The platform admin's KubeBYON API key: a bk-bcs admin token."""
    await login(client, platform_admin)
    response = await client.post("/api/console/api-keys", json={"name": "bk-bcs"})
    assert response.status == 201
    key: str = (await response.json())["api_key"]["key"]
    client.session.cookie_jar.clear()
    return key


async def as_user(client: TestClient, user: User) -> None:
    client.session.cookie_jar.clear()
    await login(client, user)


async def console(client: TestClient, method: str, path: str = "", **kw: Any) -> Any:
    response = await client.request(method, CLUSTERS + path, **kw)
    return response.status, await response.json()


async def listed(client: TestClient) -> list[str]:
    status, body = await console(client, "GET")
    assert status == 200, body
    return [cluster["id"] for cluster in body["clusters"]]


async def report(client: TestClient, register_token: str, **changes: str) -> None:
    body = {
        "register_token": register_token,
        "server_addresses": "https://10.0.0.1:6443",
        "cacert_data": ca_of(FakeKubeAPI(tls=True)),
        "user_token": TOKEN,
        **changes,
    }
    assert await ok(client, "PUT", CREDENTIALS, None, json=body) is None


async def cluster_row(db: Database, cluster_id: str = CLUSTER_ID) -> Any:
    return await db.fetchrow("SELECT * FROM clusters WHERE id = $1", cluster_id)


async def test_a_registered_cluster_shows_in_the_console_as_imported_for_admins(
    client: TestClient, root: str, platform_admin: User, make_user: MakeUser
) -> None:
    await register(client, root)
    await as_user(client, platform_admin)
    status, body = await console(client, "GET")
    assert status == 200, body
    (cluster,) = body["clusters"]
    assert cluster["id"] == CLUSTER_ID
    assert cluster["backend"] == "imported"
    assert cluster["name"] == cluster["vcluster_name"] == CLUSTER_ID
    assert cluster["owner_user_id"] == platform_admin.id  # registered with their API key
    assert cluster["status"] == "provisioning"
    assert cluster["connection_status"] == "kubeconfig_pending"
    assert cluster["kubeconfig_available"] is False
    assert cluster["api_endpoint"] is None
    status, body = await console(client, "GET", f"/{CLUSTER_ID}")
    assert (status, body["cluster"]) == (200, cluster)
    # Managed through bk-bcs, not the console.
    for method, kw in (("PUT", {"json": {"workload_cpu_limit_milli_cores": 4000}}), ("DELETE", {})):
        status, body = await console(client, method, f"/{CLUSTER_ID}", **kw)
        assert (status, body["error"]["code"]) == (409, "cluster_imported")

    await as_user(client, await make_user())
    assert await listed(client) == []
    status, body = await console(client, "GET", f"/{CLUSTER_ID}")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_the_agents_credentials_make_it_ready_and_the_connection_reconciler_reaches_it(
    client: TestClient,
    root: str,
    platform_admin: User,
    db: Database,
    services: Services,
    imported_api: FakeKubeAPI,
) -> None:
    register_token = await register(client, root)
    reported = {"server_addresses": imported_api.url, "cacert_data": ca_of(imported_api)}
    await report(client, register_token, **reported)
    row = await cluster_row(db)
    assert (row["status"], row["connection_status"]) == ("ready", "pending")
    assert row["api_endpoint"] == imported_api.url
    assert row["kubeconfig_available"] is True
    assert row["kubeconfig_available_at"] is not None
    assert row["last_error_message"] is None
    assert (await queue_row(db, CONNECTION, CLUSTER_ID)) is not None  # woken by the write

    runtime = Runtime(
        db,
        [ConnectionReconciler(services.secrets, interval=0.2)],
        lease_seconds=5.0,
        idle_poll_seconds=0.2,
        backoff_base=0.05,
        backoff_cap=0.3,
        rng=random.Random(5),
    )
    await runtime.start()
    try:

        async def connection(status: str) -> Any:
            row = await cluster_row(db)
            return row if row["connection_status"] == status else None

        row = await wait_until(lambda: connection("reachable"), what="reachable")
        assert row["observed_kubernetes_version"] == "v1.30.4"
        await as_user(client, platform_admin)
        status, body = await console(client, "GET", f"/{CLUSTER_ID}")
        assert status == 200, body
        assert body["cluster"]["connection_status"] == "reachable"
        assert body["cluster"]["api_endpoint"] == imported_api.url
        client.session.cookie_jar.clear()

        # The agent reports the same credentials again: no change, no audit event.
        events = await db.fetchval("SELECT count(*) FROM audit_events")
        await report(client, register_token, **reported)
        assert (await cluster_row(db))["connection_status"] == "reachable"
        assert await db.fetchval("SELECT count(*) FROM audit_events") == events

        # New credentials the cluster refuses: the connection reconciler says so.
        await report(client, register_token, **reported, user_token="revoked-token")
        await wait_until(lambda: connection("error"), what="refused credentials")
        # The cluster stops answering: unreachable.
        await report(client, register_token, **reported)
        await wait_until(lambda: connection("reachable"), what="reachable again")
        await imported_api.stop()
        await wait_until(lambda: connection("unreachable"), what="unreachable")
    finally:
        await runtime.stop(grace=5.0)


async def test_credentials_kubebyon_cannot_use_leave_the_imported_cluster_in_error(
    client: TestClient, root: str, db: Database
) -> None:
    register_token = await register(client, root)
    await report(client, register_token, cacert_data="xxxx")  # the seed's example
    row = await cluster_row(db)
    assert (row["status"], row["connection_status"]) == ("error", "error")
    assert row["last_error_message"] == "the CA in the bk-bcs credentials is not a PEM certificate"
    assert row["kubeconfig_encrypted"] is None
    assert row["kubeconfig_available"] is False
    assert (await queue_row(db, CONNECTION, CLUSTER_ID)) is None
    # bk-bcs keeps what its agent sent.
    assert (await ok(client, "GET", CREDENTIALS, root))["ca_cert_data"] == "xxxx"

    await report(client, register_token, user_token="two words")
    row = await cluster_row(db)
    assert row["status"] == "error"
    assert "user token" in row["last_error_message"]

    await report(client, register_token)
    row = await cluster_row(db)
    assert (row["status"], row["connection_status"]) == ("ready", "pending")
    assert row["last_error_message"] is None
    assert (await queue_row(db, CONNECTION, CLUSTER_ID)) is not None


async def test_the_ca_and_token_are_encrypted_at_rest(
    client: TestClient, root: str, db: Database, services: Services
) -> None:
    register_token = await register(client, root)
    ca = ca_of(FakeKubeAPI(tls=True))
    await report(client, register_token, cacert_data=ca)
    secrets = {
        TOKEN,
        ca,
        ca.splitlines()[1],  # one line of the certificate's base64 body
        base64.b64encode(ca.encode()).decode(),  # as a kubeconfig holds it
        register_token,
    }
    for table in ("clusters", "bcs_credentials", "audit_events", "reconcile_queue"):
        dump = " ".join(str(dict(row)) for row in await db.fetch(f"SELECT * FROM {table}"))
        assert dump, table
        for secret in secrets:
            assert secret not in dump, table
    # What is stored is the kubeconfig of the reported credentials.
    kubeconfig = yaml.safe_load(
        services.secrets.decrypt((await cluster_row(db))["kubeconfig_encrypted"])
    )
    (entry,) = kubeconfig["clusters"]
    assert entry["cluster"]["server"] == "https://10.0.0.1:6443"
    assert base64.b64decode(entry["cluster"]["certificate-authority-data"]).decode() == ca
    assert kubeconfig["users"][0]["user"]["token"] == TOKEN


async def test_a_bk_bcs_viewer_grant_shows_the_cluster_read_only_to_the_linked_account(
    client: TestClient, root: str, make_user: MakeUser
) -> None:
    alice = await make_user("alice@example.com")
    bob = await make_user("bob@example.com")
    bcs_alice = await make_bcs_user(client, root, "plain", "alice@example.com")  # linked
    await register(client, root)
    await as_user(client, bob)
    status, body = await console(client, "POST", json=SEED_CREATE)
    assert status == 201, body
    bobs = body["cluster"]["id"]  # a KubeBYON cluster: cl_…
    client.session.cookie_jar.clear()

    async def alice_sees() -> list[str]:
        await as_user(client, alice)
        ids = await listed(client)
        client.session.cookie_jar.clear()
        return ids

    assert await alice_sees() == []
    viewer = {
        "apiVersion": "v1",
        "kind": "permission",
        "spec": {
            "permissions": [
                single("alice@example.com", "viewer", resource=cluster)["spec"]["permissions"][0]
                for cluster in (CLUSTER_ID, bobs)
            ]
        },
    }
    await grant(client, root, viewer)
    assert sorted(await alice_sees()) == sorted([CLUSTER_ID, bobs])
    verdict = await ok(
        client,
        "GET",
        "/permissions/verify",
        root,
        json={
            "user_token": bcs_alice["user_token"],
            "resource_type": "cluster",
            "resource": CLUSTER_ID,
            "action": "GET",
        },
    )
    assert verdict == {"allowed": True, "message": ""}

    await as_user(client, alice)
    for cluster_id, backend in ((CLUSTER_ID, "imported"), (bobs, "vcluster")):
        status, body = await console(client, "GET", f"/{cluster_id}")
        assert status == 200, body
        assert body["cluster"]["backend"] == backend
        status, body = await console(client, "PUT", f"/{cluster_id}", json=SEED_UPDATE)
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await console(client, "DELETE", f"/{cluster_id}")
        assert (status, body["error"]["code"]) == (403, "forbidden")
    client.session.cookie_jar.clear()

    await grant(client, root, viewer, "DELETE")
    assert await alice_sees() == []
    await as_user(client, alice)
    for cluster_id in (CLUSTER_ID, bobs):
        status, body = await console(client, "GET", f"/{cluster_id}")
        assert (status, body["error"]["code"]) == (404, "not_found")


async def test_kubebyon_ids_are_refused_and_a_clash_with_a_kubebyon_cluster_keeps_nothing(
    client: TestClient, root: str, make_user: MakeUser, db: Database
) -> None:
    message = await refused(
        client, "POST", "/clusters", root, 400, json={"cluster_id": "cl_x1", "cluster_type": "k8s"}
    )
    assert message == "errcode: 1405061, cluster ids starting with cl_ are KubeBYON's own"
    body = {"cluster_id": "BCS-K8S-002\n", "cluster_type": "k8s"}
    await refused(client, "POST", "/clusters", root, 400, json=body)

    await as_user(client, await make_user())
    status, body = await console(client, "POST", json=SEED_CREATE)  # vcluster_name "demo"
    assert status == 201, body
    client.session.cookie_jar.clear()
    events = await db.fetchval("SELECT count(*) FROM audit_events")
    message = await refused(
        client, "POST", "/clusters", root, 409, json={"cluster_id": "demo", "cluster_type": "k8s"}
    )
    assert message.endswith("create cluster failed, a KubeBYON cluster uses the name [demo]")
    assert await db.fetchval("SELECT count(*) FROM bcs_clusters") == 0
    assert await db.fetchval("SELECT count(*) FROM clusters") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_events") == events


async def test_server_addresses_at_this_machine_or_metadata_services_are_refused(
    client: TestClient, root: str, db: Database
) -> None:
    """The rule itself: tests/unit/test_bcs_rules.py (loopback too: this module's settings
    allow loopback for its fake cluster)."""
    register_token = await register(client, root)
    for address in (
        "https://169.254.169.254",
        "https://10.0.0.1:6443;https://[fe80::1]:6443",
        "https://0.0.0.0:6443",
    ):
        body = {
            "register_token": register_token,
            "server_addresses": address,
            "cacert_data": ca_of(FakeKubeAPI(tls=True)),
            "user_token": TOKEN,
        }
        message = await refused(client, "PUT", CREDENTIALS, None, 400, json=body)
        assert "points at this machine or a link-local or metadata address" in message
    assert await db.fetchval("SELECT count(*) FROM bcs_credentials") == 0
    assert (await cluster_row(db))["status"] == "provisioning"


async def test_private_addresses_of_on_premises_clusters_are_accepted(
    client: TestClient, root: str, db: Database
) -> None:
    register_token = await register(client, root)
    for address in (
        "https://10.0.0.1:6443;https://10.0.0.2:6443",
        "https://192.168.1.10",
        "https://172.16.5.4:443",
        "https://[fd00::2]:6443",
        "https://kube.internal.example:6443",
    ):
        await report(client, register_token, server_addresses=address)
        assert (await cluster_row(db))["api_endpoint"] == address.split(";")[0]


async def test_the_vcluster_reconciler_leaves_imported_clusters_alone(
    client: TestClient, root: str, db: Database, services: Services
) -> None:
    await report(client, await register(client, root))
    before = await cluster_row(db)
    reconciler = VClusterReconciler(None, services.secrets, chart_repo="", chart_version="")
    assert [key async for key in reconciler.keys(db)] == []
    result = await reconciler.reconcile(CLUSTER_ID, Context(db=db, key=CLUSTER_ID, attempt=0))
    assert result.forget
    assert await cluster_row(db) == before


async def test_deleting_the_owners_account_leaves_the_imported_cluster(
    client: TestClient, root: str, make_user: MakeUser, db: Database
) -> None:
    ops = await make_user("ops@example.com")
    token = (await make_bcs_user(client, root, "admin", "ops@example.com"))["user_token"]
    await register(client, token)
    assert (await cluster_row(db))["owner_user_id"] == ops.id
    await as_user(client, ops)
    status, body = await console(client, "GET", f"/{CLUSTER_ID}")
    assert (status, body["cluster"]["backend"]) == (200, "imported")
    response = await client.delete("/api/console/me", json={"password": ops.password})
    assert response.status == 200, await response.text()
    assert (await cluster_row(db))["status"] == "provisioning"
    assert await db.fetchval("SELECT count(*) FROM cluster_operations") == 0
