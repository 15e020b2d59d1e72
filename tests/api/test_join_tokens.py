"""Join tokens and the join script through the real app and PostgreSQL: creation (value
shown once, only its hash stored), revocation, and the public join endpoints (one answer
for every bad token, rate limit per client IP, nothing secret in logs)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from kubebyon.domain.ratelimit import SlidingWindowLimiter
from kubebyon.domain.system_settings import SystemSettings
from kubebyon.domain.tokens import token_hash
from kubebyon.settings import Settings
from tests.api.conftest import MakeUser, User, login
from tests.support import queue_row

HOST_API_URL = "https://k3s.example.test:6443"
CA_HASH = hashlib.sha256(b"the host CA").hexdigest()
CREATED_FIELDS = {
    "id",
    "cluster_id",
    "value",
    "join_command",
    "display_prefix",
    "status",
    "bootstrap_secret_name",
    "expires_at",
    "created_at",
}
LIFECYCLE_FIELDS = {
    "id",
    "cluster_id",
    "display_prefix",
    "status",
    "created_by_user_id",
    "used_by_node_id",
    "bootstrap_secret_name",
    "expires_at",
    "created_at",
    "used_at",
    "revoked_at",
    "revoked_by_user_id",
}


@pytest.fixture
def settings() -> Settings:
    return Settings(host_api_url=HOST_API_URL, join_rate_limit_burst=1000)


async def make_cluster(db: Database, owner: User, status: str = "ready") -> str:
    cluster_id = new_id("cl")
    name = f"c{cluster_id[-8:]}"
    await db.execute(
        "INSERT INTO clusters (id, owner_user_id, name, namespace, vcluster_name, status, "
        "kubernetes_version, workload_cpu_limit_milli_cores, workload_memory_limit_mib, "
        "control_plane_cpu_request_milli_cores, control_plane_memory_request_mib) "
        "VALUES ($1, $2, $3, $3, $3, $4, 'v1.31.2', 2000, 2048, 500, 512)",
        cluster_id,
        owner.id,
        name,
        status,
    )
    return cluster_id


async def create_token(client: TestClient, cluster_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/console/clusters/{cluster_id}/join-token", json=body)
    assert response.status == 201, await response.text()
    token: dict[str, Any] = (await response.json())["token"]
    return token


async def observed(db: Database, token_id: str) -> None:
    """What the join_tokens reconciler records once the host Secret exists."""
    await db.execute(
        "UPDATE join_tokens SET secret_created_at = now(), host_ca_hash = $2, "
        "k3s_version = 'v1.31.4+k3s1' WHERE id = $1",
        token_id,
        CA_HASH,
    )


async def use_system_settings(services: Services, **values: Any) -> None:
    async with services.db.transaction() as conn:
        await services.system_settings.put(conn, SystemSettings(**values), None)
    services.system_settings.invalidate()


async def audit_events(db: Database, action: str) -> list[Any]:
    return await db.fetch(
        "SELECT * FROM audit_events WHERE resource_type = 'token' AND action = $1", action
    )


# ------------------------------------------------------------------------- create


async def test_create_shows_the_value_once_and_stores_only_its_hash(
    client: TestClient, services: Services, signed_in: User
) -> None:
    db = services.db
    cluster_id = await make_cluster(db, signed_in)
    await use_system_settings(services, join_base_url="https://join.example.test/")
    with structlog.testing.capture_logs() as logs:
        token = await create_token(client, cluster_id, ttl_seconds=3600)

    assert set(token) == CREATED_FIELDS
    value = token["value"]
    bootstrap_id = value[len("kbt_") : len("kbt_") + 6]
    assert token["cluster_id"] == cluster_id and token["status"] == "active"
    assert token["display_prefix"] == f"kbt_{bootstrap_id}"
    assert token["bootstrap_secret_name"] == f"bootstrap-token-{bootstrap_id}"
    assert token["join_command"] == (
        f'curl -sfL "https://join.example.test/join?token={value}" | sh -'
    )
    lifetime = datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(
        token["created_at"]
    )
    assert abs(lifetime - timedelta(hours=1)) < timedelta(seconds=5)

    row = await db.fetchrow("SELECT * FROM join_tokens WHERE id = $1", token["id"])
    assert row is not None
    assert bytes(row["value_hash"]) == token_hash(value)
    secret_half = value.split(".")[1]
    assert not [k for k, v in dict(row).items() if secret_half in str(v)]
    (event,) = await audit_events(db, "create")
    assert event["resource_id"] == token["id"] and event["cluster_id"] == cluster_id
    assert secret_half not in f"{dict(event)}"
    assert secret_half not in f"{logs}"
    assert await queue_row(db, "join_tokens", token["id"]) is not None

    # The value works: the join script answers it.
    await observed(db, token["id"])
    script = await client.get("/join", params={"token": value})
    assert script.status == 200
    assert f"::{value.removeprefix('kbt_')}'" in await script.text()


async def test_the_body_may_be_omitted_and_ttl_defaults_to_an_hour(
    client: TestClient, services: Services, signed_in: User
) -> None:
    cluster_id = await make_cluster(services.db, signed_in)
    response = await client.post(f"/api/console/clusters/{cluster_id}/join-token")
    assert response.status == 201, await response.text()
    token = (await response.json())["token"]
    lifetime = datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(
        token["created_at"]
    )
    assert abs(lifetime - timedelta(hours=1)) < timedelta(seconds=5)


@pytest.mark.parametrize("ttl", [600, 604800])
async def test_ttl_bounds_are_inclusive(
    client: TestClient, services: Services, signed_in: User, ttl: int
) -> None:
    cluster_id = await make_cluster(services.db, signed_in)
    token = await create_token(client, cluster_id, ttl_seconds=ttl)
    lifetime = datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(
        token["created_at"]
    )
    assert abs(lifetime.total_seconds() - ttl) < 5


@pytest.mark.parametrize(
    "body",
    [
        b'{"ttl_seconds": 599}',
        b'{"ttl_seconds": 604801}',
        b'{"ttl_seconds": -1}',
        b'{"ttl_seconds": "3600"}',
        b'{"ttl_seconds": true}',
        b'{"ttl_seconds": 3600.5}',
        b'{"ttl": 3600}',
        b'{"ttl_seconds": 3600',
        b"[3600]",
    ],
)
async def test_bad_bodies_are_400_and_create_nothing(
    client: TestClient, services: Services, signed_in: User, body: bytes
) -> None:
    cluster_id = await make_cluster(services.db, signed_in)
    response = await client.post(
        f"/api/console/clusters/{cluster_id}/join-token",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    error = (await response.json())["error"]
    if b"ttl_seconds" in body and body.endswith(b"}"):
        assert error["message"].startswith("ttl_seconds")
    assert await services.db.fetchval("SELECT count(*) FROM join_tokens") == 0


@pytest.mark.parametrize("status", ["provisioning", "error", "deleting"])
async def test_only_a_ready_cluster_gets_tokens(
    client: TestClient, services: Services, signed_in: User, status: str
) -> None:
    cluster_id = await make_cluster(services.db, signed_in, status)
    response = await client.post(f"/api/console/clusters/{cluster_id}/join-token", json={})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "cluster_not_ready"


async def test_imported_clusters_get_no_tokens(
    client: TestClient, services: Services, signed_in: User
) -> None:
    cluster_id = await make_cluster(services.db, signed_in)
    await services.db.execute("UPDATE clusters SET backend = 'imported' WHERE id = $1", cluster_id)
    response = await client.post(f"/api/console/clusters/{cluster_id}/join-token", json={})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "cluster_imported"


async def test_other_users_clusters_are_404_like_missing_ones(
    client: TestClient, services: Services, make_user: MakeUser
) -> None:
    other = await make_user()
    cluster_id = await make_cluster(services.db, other)
    me = await make_user()
    await login(client, me)
    theirs = await client.post(f"/api/console/clusters/{cluster_id}/join-token", json={})
    missing = await client.post("/api/console/clusters/cl_missing/join-token", json={})
    assert theirs.status == missing.status == 404
    assert await theirs.json() == await missing.json()


async def test_admins_may_create_tokens_for_any_cluster(
    client: TestClient, services: Services, make_user: MakeUser, admin: User
) -> None:
    cluster_id = await make_cluster(services.db, await make_user())
    token = await create_token(client, cluster_id)
    assert token["cluster_id"] == cluster_id


async def test_without_a_host_api_url_joining_is_not_configured(
    client: TestClient, services: Services, signed_in: User
) -> None:
    services.settings = Settings()
    cluster_id = await make_cluster(services.db, signed_in)
    response = await client.post(f"/api/console/clusters/{cluster_id}/join-token", json={})
    assert response.status == 503
    assert "KUBEBYON_HOST_API_URL" in (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    ("public_base_url", "expected"),
    [("https://console.example.test", "https://console.example.test"), (None, None)],
)
async def test_join_command_falls_back_to_public_base_url_then_the_request(
    client: TestClient,
    services: Services,
    signed_in: User,
    public_base_url: str | None,
    expected: str | None,
) -> None:
    await use_system_settings(services, public_base_url=public_base_url)
    cluster_id = await make_cluster(services.db, signed_in)
    token = await create_token(client, cluster_id)
    base = expected or str(client.make_url("")).rstrip("/")
    assert token["join_command"] == f'curl -sfL "{base}/join?token={token["value"]}" | sh -'


# ------------------------------------------------------------------------- revoke


async def test_revoke_is_idempotent_and_audited_once(
    client: TestClient, services: Services, signed_in: User
) -> None:
    db = services.db
    token = await create_token(client, await make_cluster(db, signed_in))
    await db.execute("DELETE FROM reconcile_queue")

    first = await client.delete(f"/api/console/tokens/{token['id']}")
    assert first.status == 200
    body = (await first.json())["token"]
    assert set(body) == LIFECYCLE_FIELDS
    assert body["status"] == "revoked" and body["revoked_by_user_id"] == signed_in.id
    assert body["revoked_at"] is not None and body["created_by_user_id"] == signed_in.id
    assert await queue_row(db, "join_tokens", token["id"]) is not None  # the Secret goes

    second = await client.delete(f"/api/console/tokens/{token['id']}")
    assert second.status == 200
    assert (await second.json())["token"] == body
    assert len(await audit_events(db, "revoke")) == 1


async def test_revoking_a_token_that_no_longer_works_records_nothing(
    client: TestClient, services: Services, signed_in: User
) -> None:
    db = services.db
    token = await create_token(client, await make_cluster(db, signed_in))
    await db.execute(
        "UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        token["id"],
    )
    response = await client.delete(f"/api/console/tokens/{token['id']}")
    assert response.status == 200
    assert (await response.json())["token"]["status"] == "expired"
    assert await audit_events(db, "revoke") == []


async def test_other_users_tokens_are_404_like_missing_ones(
    client: TestClient, services: Services, make_user: MakeUser
) -> None:
    owner = await make_user()
    await login(client, owner)
    token = await create_token(client, await make_cluster(services.db, owner))
    await login(client, await make_user())
    theirs = await client.delete(f"/api/console/tokens/{token['id']}")
    missing = await client.delete("/api/console/tokens/tok_missing")
    assert theirs.status == missing.status == 404
    assert await theirs.json() == await missing.json()
    status = await services.db.fetchval("SELECT status FROM join_tokens WHERE id = $1", token["id"])
    assert status == "active"


# -------------------------------------------------------------------- join script


async def test_the_join_script_for_an_active_token(
    client: TestClient, services: Services, signed_in: User
) -> None:
    cluster_id = await make_cluster(services.db, signed_in)
    token = await create_token(client, cluster_id)
    await observed(services.db, token["id"])
    for path in ("/join", f"/api/join/clusters/{cluster_id}/script"):
        response = await client.get(path, params={"token": token["value"]})
        assert response.status == 200, await response.text()
        assert response.content_type == "text/x-shellscript"
        assert response.headers["Cache-Control"] == "no-store"
        script = await response.text()
        assert script.startswith("#!/bin/sh\n")
        assert f"K3S_SERVER_URL='{HOST_API_URL}'" in script
        assert "K3S_VERSION='v1.31.4+k3s1'" in script
        bootstrap = token["value"].removeprefix("kbt_")
        assert f"K3S_JOIN_TOKEN='K10{CA_HASH}::{bootstrap}'" in script
        assert f"TOKEN_LABEL='kubebyon.io/join-token-id={token['id']}'" in script


async def test_a_token_not_yet_on_the_host_is_503_with_retry_after(
    client: TestClient, services: Services, signed_in: User
) -> None:
    token = await create_token(client, await make_cluster(services.db, signed_in))
    response = await client.get("/join", params={"token": token["value"]})
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await response.text()).count("\n") == 1


async def test_every_bad_token_gets_the_same_one_line_answer(
    client: TestClient, services: Services, signed_in: User, make_user: MakeUser
) -> None:
    db = services.db
    cluster_id = await make_cluster(db, signed_in)
    tokens = {}
    for kind in ("expired", "revoked", "used", "deleting", "good"):
        token = await create_token(client, await make_cluster(db, signed_in))
        await observed(db, token["id"])
        tokens[kind] = token
    await db.execute(
        "UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        tokens["expired"]["id"],
    )
    await client.delete(f"/api/console/tokens/{tokens['revoked']['id']}")
    await db.execute("UPDATE join_tokens SET status = 'used' WHERE id = $1", tokens["used"]["id"])
    await db.execute(
        "UPDATE clusters SET status = 'deleting' WHERE id = $1", tokens["deleting"]["cluster_id"]
    )
    good = tokens["good"]["value"]
    unknown = "kbt_abcdef.0123456789abcdef"
    requests = [
        ("/join", {}),
        ("/join", {"token": ""}),
        ("/join", {"token": "not a token"}),
        ("/join", {"token": good.upper()}),
        ("/join", {"token": unknown}),
        *[("/join", {"token": tokens[k]["value"]}) for k in ("expired", "revoked", "used")],
        ("/join", {"token": tokens["deleting"]["value"]}),
        # Legacy path: another cluster's id, or none that exists, with a good token.
        (f"/api/join/clusters/{cluster_id}/script", {"token": good}),
        ("/api/join/clusters/cl_missing/script", {"token": good}),
        ("/api/join/clusters/cl_missing/script", {"token": unknown}),
    ]
    answers = set()
    for path, params in requests:
        response = await client.get(path, params=params)
        text = await response.text()
        assert response.content_type == "text/plain"
        answers.add((response.status, text))
    assert len(answers) == 1, answers
    ((status, text),) = answers
    assert status == 404
    assert text.endswith("\n") and text.count("\n") == 1
    ok = await client.get(f"/api/join/clusters/{tokens['good']['cluster_id']}/script?token={good}")
    assert ok.status == 200


async def test_the_join_endpoints_are_rate_limited_per_client_ip(
    client: TestClient, services: Services
) -> None:
    services.join_limiter = SlidingWindowLimiter(window=60, burst=2, max_entries=100)
    for _ in range(2):
        assert (await client.get("/join", params={"token": "x"})).status == 404
    limited = await client.get("/api/join/clusters/cl_x/script", params={"token": "x"})
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    text = await limited.text()
    assert limited.content_type == "text/plain" and text.count("\n") == 1
    # The peer is not a trusted proxy: X-Forwarded-For does not buy a new budget.
    forged = await client.get(
        "/join", params={"token": "x"}, headers={"X-Forwarded-For": "1.2.3.4"}
    )
    assert forged.status == 429


async def test_forwarded_for_counts_only_from_trusted_proxies(
    client: TestClient, services: Services
) -> None:
    services.settings = Settings(host_api_url=HOST_API_URL, trusted_proxy_cidrs="127.0.0.1/32")
    services.join_limiter = SlidingWindowLimiter(window=60, burst=1, max_entries=100)

    async def status(forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        return (await client.get("/join", params={"token": "x"}, headers=headers)).status

    assert await status("198.51.100.1") == 404
    assert await status("198.51.100.1") == 429  # the same client behind the proxy
    assert await status("198.51.100.2") == 404  # another client: its own budget


async def test_tokens_never_reach_the_logs(
    client: TestClient, services: Services, signed_in: User
) -> None:
    token = await create_token(client, await make_cluster(services.db, signed_in))
    await observed(services.db, token["id"])
    with structlog.testing.capture_logs() as logs:
        assert (await client.get("/join", params={"token": token["value"]})).status == 200
        assert (await client.get("/join", params={"token": token["value"] + "x"})).status == 404
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert [entry["path"] for entry in requests] == ["/join", "/join"]
    assert token["value"].split(".")[1] not in f"{logs}"
