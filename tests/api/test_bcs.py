"""The bk-bcs user-manager dialect, from the seed's examples (002): request bodies are the
seed's, responses are checked field by field, and permissions are decided by the same
engine as the console's."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from api.compat.bcs import routes
from api.openapi import RouteSpec
from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.authz import Access, subjects_of
from kubebyon.secretbox import SecretBox
from tests.api.conftest import MakeUser, login

BASE = "/bcsapi/v4/usermanager/v1"
ANONYMOUS = {
    "result": False,
    "code": 1405059,
    "message": "errcode: 1405059,  anonymous requests is forbidden, please provide a valid token",
    "data": None,
}
USER_FIELDS = {"id", "name", "user_type", "user_token", "created_at", "updated_at", "expires_at"}
TOKEN = re.compile(r"^[A-Za-z0-9]{32}$")
# The seed's permission example, verbatim.
SEED_PERMISSIONS: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "permissions",
    "name": "my-permission",
    "spec": {
        "permissions": [
            {
                "user_name": "xx",
                "resource_type": "cluster",
                "resource": "BCS-K8S-001",
                "role": "viewer",
            },
            {
                "user_name": "yy",
                "resource_type": "cluster",
                "resource": "BCS-K8S-001",
                "role": "viewer",
            },
        ]
    },
}


async def call(
    client: TestClient,
    method: str,
    path: str,
    token: str | None = None,
    *,
    json: Any = None,
    params: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.request(method, BASE + path, headers=headers, json=json, params=params)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def ok(client: TestClient, method: str, path: str, token: str | None, **kw: Any) -> Any:
    status, body = await call(client, method, path, token, **kw)
    assert status == 200, body
    assert body["result"] is True
    assert body["code"] == 0
    assert body["message"] == "success"
    assert set(body) == {"result", "code", "message", "data"}
    return body["data"]


async def refused(
    client: TestClient, method: str, path: str, token: str | None, status: int, **kw: Any
) -> str:
    got, body = await call(client, method, path, token, **kw)
    assert got == status, body
    assert body["result"] is False
    assert body["data"] is None
    assert body["code"] == (1405059 if status == 401 else 1405061)
    message: str = body["message"]
    assert message.startswith(f"errcode: {body['code']}, ")
    return message


def when(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


@pytest.fixture
async def root(client: TestClient, make_user: MakeUser) -> str:
    """A platform admin's KubeBYON API key: a bk-bcs admin token."""
    admin = await make_user(role="admin")
    await login(client, admin)
    response = await client.post("/api/console/api-keys", json={"name": "bk-bcs"})
    assert response.status == 201
    key: str = (await response.json())["api_key"]["key"]
    client.session.cookie_jar.clear()
    return key


async def make_bcs_user(client: TestClient, token: str, kind: str, name: str) -> dict[str, Any]:
    user: dict[str, Any] = await ok(client, "POST", f"/users/{kind}/{name}", token)
    return user


@pytest.fixture
async def admin1(client: TestClient, root: str) -> str:
    token: str = (await make_bcs_user(client, root, "admin", "admin1"))["user_token"]
    return token


async def test_creating_and_reading_an_admin_user_as_in_the_seed(
    client: TestClient, root: str
) -> None:
    created = await ok(client, "POST", "/users/admin/admin1", root)
    assert set(created) == USER_FIELDS
    assert isinstance(created["id"], int)
    assert created["name"] == "admin1"
    assert created["user_type"] == 1
    assert TOKEN.match(created["user_token"])
    assert created["created_at"] == created["updated_at"]
    assert when(created["expires_at"]) - when(created["created_at"]) == timedelta(days=3650)

    # GET returns the token again (it is kept encrypted for that).
    assert await ok(client, "GET", "/users/admin/admin1", root) == created
    # The new admin's token is an admin token.
    assert await ok(client, "GET", "/users/admin/admin1", created["user_token"]) == created

    message = await refused(client, "POST", "/users/admin/admin1", root, 409)
    assert message == "errcode: 1405061, user [admin1] already exist"
    assert await ok(client, "GET", "/users/admin/admin1", root) == created
    message = await refused(client, "GET", "/users/admin/nobody", root, 404)
    assert message == "errcode: 1405061, user with user_name=nobody not found"
    # The same name as another type is another user.
    saas = await make_bcs_user(client, root, "saas", "admin1")
    assert saas["user_type"] == 2
    assert saas["id"] != created["id"]


@pytest.mark.parametrize(
    "spec",
    [s for s in routes.routes if not (s.method == "PUT" and s.path.endswith("/credentials"))],
    ids=lambda spec: f"{spec.method} {spec.path.removeprefix(BASE)}",
)
async def test_every_route_but_the_agents_answers_anonymous_callers_with_the_bk_bcs_401(
    client: TestClient, spec: RouteSpec
) -> None:
    path = spec.path.format(name="admin1", days="2", cluster_id="BCS-K8S-001")
    for headers in (
        {},
        {"Authorization": "Bearer " + "A" * 32},  # well-formed, unknown
        {"Authorization": "Bearer kbk_unknown"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ):
        response = await client.request(spec.method, path, headers=headers)
        assert response.status == 401
        assert await response.json() == ANONYMOUS
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_who_may_call_the_user_routes(
    client: TestClient, root: str, admin1: str, services: Services
) -> None:
    saas = (await make_bcs_user(client, admin1, "saas", "saas1"))["user_token"]
    plain_user = await make_bcs_user(client, saas, "plain", "xxxx")
    plain = plain_user["user_token"]
    assert plain_user["user_type"] == 3

    # saas tokens manage plain users only.
    assert await ok(client, "GET", "/users/plain/xxxx", saas) == plain_user
    assert await ok(client, "PUT", "/users/plain/xxxx/refresh/1", saas)
    for method, path in (
        ("POST", "/users/admin/a2"),
        ("GET", "/users/admin/admin1"),
        ("POST", "/users/saas/s2"),
        ("GET", "/users/saas/saas1"),
        ("PUT", "/users/saas/saas1/refresh"),
        ("POST", "/clusters"),
        ("POST", "/permissions"),
        ("GET", "/permissions/verify"),
    ):
        assert (await call(client, method, path, saas)) == (401, ANONYMOUS)
    # Plain tokens call nothing.
    for method, path in (("POST", "/users/plain/p2"), ("GET", "/users/plain/xxxx")):
        assert (await call(client, method, path, plain)) == (401, ANONYMOUS)
    # Admin tokens call everything.
    assert await ok(client, "GET", "/users/plain/xxxx", admin1)
    assert await ok(client, "GET", "/users/saas/saas1", admin1)

    # An expired admin token is no token at all.
    services.now = lambda: datetime.now().astimezone() + timedelta(days=3651)
    assert (await call(client, "GET", "/users/plain/xxxx", admin1)) == (401, ANONYMOUS)
    assert await ok(client, "GET", "/users/plain/xxxx", root)


async def test_a_plain_token_lives_a_day_and_refresh_extends_a_live_one_or_replaces_an_expired_one(
    client: TestClient, admin1: str, services: Services
) -> None:
    saas = (await make_bcs_user(client, admin1, "saas", "saas1"))["user_token"]
    created = await make_bcs_user(client, saas, "plain", "xxxx")
    assert when(created["expires_at"]) - when(created["created_at"]) == timedelta(hours=24)

    now = datetime.now().astimezone()
    services.now = lambda: now
    live = await ok(client, "PUT", "/users/plain/xxxx/refresh/2", saas)
    assert live["user_token"] == created["user_token"]
    assert live["id"] == created["id"]
    assert when(live["expires_at"]) == now + timedelta(days=2)
    assert when(live["updated_at"]) == now
    assert live["created_at"] == created["created_at"]

    later = now + timedelta(days=3)
    services.now = lambda: later
    verify = {"resource_type": "cluster", "resource": "BCS-K8S-001", "action": "GET"}
    expired = await ok(
        client,
        "GET",
        "/permissions/verify",
        admin1,
        json={"user_token": live["user_token"], **verify},
    )
    assert expired == {"allowed": False, "message": f"usertoken [{live['user_token']}] is expired"}

    renewed = await ok(client, "PUT", "/users/plain/xxxx/refresh/3", saas)
    assert TOKEN.match(renewed["user_token"])
    assert renewed["user_token"] != created["user_token"]
    assert when(renewed["expires_at"]) == later + timedelta(days=3)
    assert await ok(client, "GET", "/users/plain/xxxx", saas) == renewed
    gone = await ok(
        client,
        "GET",
        "/permissions/verify",
        admin1,
        json={"user_token": created["user_token"], **verify},
    )
    assert gone == {"allowed": False, "message": f"usertoken [{created['user_token']}] is invalid"}

    for days in ("0", "-1", "366", "two", "1.5"):
        message = await refused(client, "PUT", f"/users/plain/xxxx/refresh/{days}", saas, 400)
        assert message == "errcode: 1405061, days must be an integer from 1 to 365"
    await refused(client, "PUT", "/users/plain/nobody/refresh/1", saas, 404)


async def test_refreshing_a_saas_token_replaces_it(client: TestClient, admin1: str) -> None:
    created = await make_bcs_user(client, admin1, "saas", "saas1")
    refreshed = await ok(client, "PUT", "/users/saas/saas1/refresh", admin1)
    assert set(refreshed) == USER_FIELDS
    assert refreshed["id"] == created["id"]
    assert refreshed["user_type"] == 2
    assert TOKEN.match(refreshed["user_token"])
    assert refreshed["user_token"] != created["user_token"]
    assert when(refreshed["expires_at"]) - when(refreshed["updated_at"]) == timedelta(days=3650)
    assert (await call(client, "POST", "/users/plain/p1", created["user_token"])) == (
        401,
        ANONYMOUS,
    )
    assert await ok(client, "POST", "/users/plain/p1", refreshed["user_token"])
    await refused(client, "PUT", "/users/saas/nobody/refresh", admin1, 404)


async def test_registering_a_cluster_as_in_the_seed(
    client: TestClient, root: str, admin1: str
) -> None:
    admin_id = (await ok(client, "GET", "/users/admin/admin1", admin1))["id"]
    seed = {
        "cluster_id": "BCS-K8S-001",
        "cluster_type": "k8s",
        "tke_cluster_id": "xxxx",
        "tke_cluster_region": "shanghai",
    }
    cluster = await ok(client, "POST", "/clusters", admin1, json=seed)
    assert set(cluster) == {
        "id",
        "cluster_type",
        "tke_cluster_id",
        "tke_cluster_region",
        "creator_id",
        "created_at",
    }
    assert cluster["id"] == "BCS-K8S-001"
    assert cluster["cluster_type"] == 1
    assert cluster["tke_cluster_id"] == ""  # kept for tke clusters only, as in the seed
    assert cluster["tke_cluster_region"] == ""
    assert cluster["creator_id"] == admin_id
    when(cluster["created_at"])

    message = await refused(client, "POST", "/clusters", admin1, 409, json=seed)
    assert message == "errcode: 1405061, create cluster failed, cluster [BCS-K8S-001] already exist"

    tke = await ok(
        client,
        "POST",
        "/clusters",
        root,
        json={**seed, "cluster_id": "BCS-TKE-1", "cluster_type": "tke"},
    )
    assert (tke["cluster_type"], tke["tke_cluster_id"], tke["tke_cluster_region"]) == (
        3,
        "xxxx",
        "shanghai",
    )
    assert tke["creator_id"] is None  # registered with a KubeBYON API key
    mesos = await ok(
        client, "POST", "/clusters", admin1, json={"cluster_id": "M-1", "cluster_type": "mesos"}
    )
    assert mesos["cluster_type"] == 2

    message = await refused(
        client,
        "POST",
        "/clusters",
        admin1,
        400,
        json={"cluster_id": "T-2", "cluster_type": "tke", "tke_cluster_id": "x"},
    )
    assert message == "errcode: 1405061, a tke cluster needs tke_cluster_id and tke_cluster_region"
    for body in (
        {"cluster_id": "X-1", "cluster_type": "k3s"},
        {"cluster_type": "k8s"},
        {"cluster_id": 7, "cluster_type": "k8s"},
        {"cluster_id": "bad id", "cluster_type": "k8s"},
        {"cluster_id": "dev-*", "cluster_type": "k8s"},
        [seed],
    ):
        await refused(client, "POST", "/clusters", admin1, 400, json=body)
    response = await client.post(
        f"{BASE}/clusters", data="{not json", headers={"Authorization": f"Bearer {admin1}"}
    )
    assert response.status == 400
    assert (await response.json())["code"] == 1405061


async def register(client: TestClient, token: str, cluster_id: str = "BCS-K8S-001") -> str:
    body = {"cluster_id": cluster_id, "cluster_type": "k8s"}
    await ok(client, "POST", "/clusters", token, json=body)
    created = await ok(client, "POST", f"/clusters/{cluster_id}/register_tokens", token)
    register_token: str = created["token"]
    return register_token


async def test_a_cluster_has_one_register_token_of_128_characters(
    client: TestClient, admin1: str
) -> None:
    await ok(
        client,
        "POST",
        "/clusters",
        admin1,
        json={"cluster_id": "BCS-K8S-001", "cluster_type": "k8s"},
    )
    path = "/clusters/BCS-K8S-001/register_tokens"
    await refused(client, "GET", path, admin1, 404)
    created = await ok(client, "POST", path, admin1)
    assert set(created) == {"id", "cluster_id", "token", "created_at"}
    assert isinstance(created["id"], int)
    assert created["cluster_id"] == "BCS-K8S-001"
    assert re.fullmatch(r"[A-Za-z0-9]{128}", created["token"])
    when(created["created_at"])
    assert await ok(client, "GET", path, admin1) == created

    message = await refused(client, "POST", path, admin1, 409)
    assert message == "errcode: 1405061, register token of cluster [BCS-K8S-001] already exist"
    assert await ok(client, "GET", path, admin1) == created
    await refused(client, "POST", "/clusters/BCS-K8S-404/register_tokens", admin1, 404)


async def test_the_agent_reports_credentials_with_the_register_token_alone(
    client: TestClient, admin1: str, db: Database
) -> None:
    register_token = await register(client, admin1)
    seed = {
        "register_token": register_token,
        "server_addresses": "https://x.x.x.x:8443",
        "cacert_data": "xxxx",
        "user_token": "xxxx",
    }
    path = "/clusters/BCS-K8S-001/credentials"
    await refused(client, "GET", path, admin1, 404)
    assert await ok(client, "PUT", path, None, json=seed) is None

    credentials = await ok(client, "GET", path, admin1)
    assert set(credentials) == {
        "id",
        "cluster_id",
        "server_addresses",
        "ca_cert_data",
        "user_token",
        "cluster_domain",
        "created_at",
        "updated_at",
    }
    assert isinstance(credentials["id"], int)
    assert credentials["cluster_id"] == "BCS-K8S-001"
    assert credentials["server_addresses"] == "https://x.x.x.x:8443"
    assert credentials["ca_cert_data"] == "xxxx"
    assert credentials["user_token"] == "xxxx"
    assert credentials["cluster_domain"] == ""
    when(credentials["created_at"])

    second = await register(client, admin1, "BCS-K8S-101")
    update = {
        **seed,
        "register_token": second,
        "server_addresses": "https://10.0.0.1:6443;https://10.0.0.2:6443",
        "cacert_data": "ca-101",
    }
    assert await ok(client, "PUT", "/clusters/BCS-K8S-101/credentials", None, json=update) is None
    listed = await ok(client, "GET", "/clusters/credentials", admin1)
    assert listed == {
        "BCS-K8S-001": {
            "server_addresses": "https://x.x.x.x:8443",
            "ca_cert_data": "xxxx",
            "user_token": "xxxx",
            "cluster_domain": "",
        },
        "BCS-K8S-101": {
            "server_addresses": "https://10.0.0.1:6443;https://10.0.0.2:6443",
            "ca_cert_data": "ca-101",
            "user_token": "xxxx",
            "cluster_domain": "",
        },
    }

    # Another cluster's token, a wrong one, or an admin token instead: refused, nothing kept.
    before = await db.fetchval("SELECT count(*) FROM audit_events")
    for token in (second, "x" * 128, admin1):
        bad = {**seed, "register_token": token, "cacert_data": "forged"}
        assert (await call(client, "PUT", path, admin1, json=bad)) == (401, ANONYMOUS)
    missing = {k: v for k, v in seed.items() if k != "register_token"}
    await refused(client, "PUT", path, None, 400, json=missing)
    await call(client, "PUT", "/clusters/BCS-K8S-404/credentials", None, json=seed)
    assert (await ok(client, "GET", path, admin1))["ca_cert_data"] == "xxxx"
    assert await db.fetchval("SELECT count(*) FROM audit_events") == before

    for addresses in (
        "http://x.x.x.x:8443",
        "https://a:6443; https://b:6443",
        "https://a:6443/api",
        "",
    ):
        message = await refused(
            client, "PUT", path, None, 400, json={**seed, "server_addresses": addresses}
        )
        assert "server" in message
    assert (await ok(client, "GET", path, admin1))["server_addresses"] == "https://x.x.x.x:8443"


async def grant(client: TestClient, token: str, body: dict[str, Any], method: str = "POST") -> None:
    assert await ok(client, method, "/permissions", token, json=body) is None


def single(
    user: str, role: str, resource_type: str = "cluster", resource: str = "BCS-K8S-001"
) -> dict[str, Any]:
    permission = {
        "user_name": user,
        "resource_type": resource_type,
        "resource": resource,
        "role": role,
    }
    return {"apiVersion": "v1", "kind": "permission", "spec": {"permissions": [permission]}}


async def verify(
    client: TestClient, admin: str, user_token: str, action: str, **kw: str
) -> dict[str, Any]:
    body = {
        "user_token": user_token,
        "resource_type": "cluster",
        "resource": "BCS-K8S-001",
        "action": action,
        **kw,
    }
    verdict: dict[str, Any] = await ok(client, "GET", "/permissions/verify", admin, json=body)
    return verdict


async def test_permissions_as_in_the_seed_grant_list_verify_and_revoke(
    client: TestClient, admin1: str, db: Database
) -> None:
    xx = (await make_bcs_user(client, admin1, "plain", "xx"))["user_token"]
    yy = (await make_bcs_user(client, admin1, "plain", "yy"))["user_token"]
    await grant(client, admin1, SEED_PERMISSIONS)
    await grant(client, admin1, SEED_PERMISSIONS)  # granting again changes nothing

    query = {"user_name": "xx", "resource_type": "cluster"}
    viewer = [{"resource_type": "cluster", "resource": "BCS-K8S-001", "role": "viewer"}]
    assert await ok(client, "GET", "/permissions", admin1, json=query) == viewer
    assert await ok(client, "GET", "/permissions", admin1, params=query) == viewer
    assert (
        await ok(
            client, "GET", "/permissions", admin1, json={**query, "resource_type": "namespace"}
        )
        == []
    )

    for token in (xx, yy):
        assert await verify(client, admin1, token, "GET") == {"allowed": True, "message": ""}
        for action in ("POST", "PUT", "PATCH", "DELETE"):
            assert await verify(client, admin1, token, action) == {
                "allowed": False,
                "message": "no permission",
            }
    assert (await verify(client, admin1, xx, "GET", resource="BCS-K8S-002"))["allowed"] is False
    params = {
        "user_token": xx,
        "resource_type": "cluster",
        "resource": "BCS-K8S-001",
        "action": "GET",
    }
    assert await ok(client, "GET", "/permissions/verify", admin1, params=params) == {
        "allowed": True,
        "message": "",
    }

    await grant(client, admin1, single("xx", "manager"))
    assert await verify(client, admin1, xx, "DELETE") == {"allowed": True, "message": ""}
    assert await ok(client, "GET", "/permissions", admin1, json=query) == [
        {"resource_type": "cluster", "resource": "BCS-K8S-001", "role": "manager"},
        *viewer,
    ]

    await grant(client, admin1, SEED_PERMISSIONS, "DELETE")
    assert await verify(client, admin1, yy, "GET") == {"allowed": False, "message": "no permission"}
    assert (await verify(client, admin1, xx, "GET"))["allowed"] is True  # still a manager
    assert await ok(client, "GET", "/permissions", admin1, json=query) == [
        {"resource_type": "cluster", "resource": "BCS-K8S-001", "role": "manager"}
    ]
    await grant(client, admin1, SEED_PERMISSIONS, "DELETE")  # revoking again changes nothing

    # One role per (resource type, resource, bk-bcs role) in the engine's tables; a role
    # nobody holds any more is gone.
    roles = await db.fetch("SELECT name, origin FROM roles WHERE origin = 'bcs'")
    assert [tuple(r) for r in roles] == [("bcs:manager:cluster:BCS-K8S-001", "bcs")]
    events = await db.fetch(
        "SELECT action, resource_id, extra FROM audit_events WHERE resource_type = 'permission' "
        "ORDER BY occurred_at, id"
    )
    # One event per change (granting or revoking again changes nothing).
    assert sorted((e["action"], e["extra"]["user_name"], e["resource_id"]) for e in events) == [
        ("grant", "xx", "bcs:manager:cluster:BCS-K8S-001"),
        ("grant", "xx", "bcs:viewer:cluster:BCS-K8S-001"),
        ("grant", "yy", "bcs:viewer:cluster:BCS-K8S-001"),
        ("revoke", "xx", "bcs:viewer:cluster:BCS-K8S-001"),
        ("revoke", "yy", "bcs:viewer:cluster:BCS-K8S-001"),
    ]


async def test_namespace_grants_verify_within_their_namespace(
    client: TestClient, admin1: str
) -> None:
    xx = (await make_bcs_user(client, admin1, "plain", "xx"))["user_token"]
    await grant(client, admin1, single("xx", "manager", "namespace_scoped", "BCS-K8S-001/team-a"))
    scoped = {"resource_type": "namespace_scoped", "resource": "BCS-K8S-001/team-a"}
    assert (await verify(client, admin1, xx, "DELETE", **scoped))["allowed"] is True
    other = {**scoped, "resource": "BCS-K8S-001/team-b"}
    assert (await verify(client, admin1, xx, "GET", **other))["allowed"] is False
    assert (await verify(client, admin1, xx, "GET"))["allowed"] is False  # not cluster-wide
    await refused(
        client,
        "GET",
        "/permissions/verify",
        admin1,
        400,
        json={
            "user_token": xx,
            "resource_type": "namespace",
            "resource": "BCS-K8S-001",
            "action": "GET",
        },
    )


async def test_verify_reports_unknown_and_malformed_tokens_as_given(
    client: TestClient, admin1: str
) -> None:
    for token in ("A" * 32, "not-a-token", ""):
        assert await verify(client, admin1, token, "GET") == {
            "allowed": False,
            "message": f"usertoken [{token}] is invalid",
        }
    for body in (
        {"resource_type": "cluster", "resource": "BCS-K8S-001", "action": "GET"},
        {"user_token": "x", "resource_type": "pods", "resource": "BCS-K8S-001", "action": "GET"},
        {"user_token": "x", "resource_type": "cluster", "resource": "BCS-K8S-001", "action": "get"},
        {"user_token": "x", "resource_type": "cluster", "resource": "BCS-*", "action": "GET"},
    ):
        await refused(client, "GET", "/permissions/verify", admin1, 400, json=body)
    await refused(client, "GET", "/permissions/verify", admin1, 400)


async def test_bad_permission_bodies_are_refused_whole(
    client: TestClient, admin1: str, db: Database
) -> None:
    await make_bcs_user(client, admin1, "plain", "xx")
    good = SEED_PERMISSIONS["spec"]["permissions"][0]
    for body in (
        {**SEED_PERMISSIONS, "kind": "role"},
        {**SEED_PERMISSIONS, "apiVersion": "v2"},
        {**SEED_PERMISSIONS, "spec": {"permissions": []}},
        {**SEED_PERMISSIONS, "spec": {"permissions": [{**good, "role": "owner"}]}},
        {**SEED_PERMISSIONS, "spec": {"permissions": [{**good, "resource_type": "pods"}]}},
        {**SEED_PERMISSIONS, "spec": {"permissions": [{**good, "resource": "BCS-*"}]}},
        {**SEED_PERMISSIONS, "spec": {"permissions": [{**good, "user_name": 1}]}},
        SEED_PERMISSIONS,  # yy does not exist: xx is not granted either
    ):
        await refused(client, "POST", "/permissions", admin1, 400, json=body)
    message = await refused(client, "POST", "/permissions", admin1, 400, json=SEED_PERMISSIONS)
    assert message == "errcode: 1405061, user [yy] not exist"
    assert await db.fetchval("SELECT count(*) FROM role_assignments") == 0
    await refused(
        client,
        "GET",
        "/permissions",
        admin1,
        404,
        json={"user_name": "yy", "resource_type": "cluster"},
    )

    # A role of another origin holding the name a grant needs: refused, nothing written.
    await db.execute(
        "INSERT INTO roles (name, origin) VALUES ('bcs:viewer:cluster:BCS-K8S-001', 'kite')"
    )
    await refused(client, "POST", "/permissions", admin1, 409, json=single("xx", "viewer"))
    assert await db.fetchval("SELECT count(*) FROM role_assignments") == 0


async def test_a_grant_to_a_bk_bcs_name_is_a_grant_to_the_linked_account_in_the_engine(
    client: TestClient, admin1: str, make_user: MakeUser, services: Services, db: Database
) -> None:
    alice = await make_user("alice@example.com")
    created = await make_bcs_user(client, admin1, "plain", "Alice@Example.com")
    linked = await db.fetchval("SELECT user_id FROM bcs_users WHERE id = $1", created["id"])
    assert linked == alice.id

    subjects = subjects_of(alice.id, alice.email)
    read = Access("BCS-K8S-001", "default", "pods", "get")
    delete = Access("BCS-K8S-001", "default", "pods", "delete")
    assert not await services.authorizer.allowed(subjects, alice.id, read)

    await grant(client, admin1, single("Alice@Example.com", "viewer"))
    assert await services.authorizer.allowed(subjects, alice.id, read)
    assert await services.authorizer.allowed(
        subjects, alice.id, Access("BCS-K8S-001", "kube-system", "secrets", "list")
    )
    assert not await services.authorizer.allowed(subjects, alice.id, delete)
    assert not await services.authorizer.allowed(
        subjects, alice.id, Access("BCS-K8S-002", "default", "pods", "get")
    )

    await grant(client, admin1, single("Alice@Example.com", "viewer"), "DELETE")
    assert not await services.authorizer.allowed(subjects, alice.id, read)


async def test_an_account_created_after_its_bk_bcs_user_is_linked_at_the_next_grant(
    client: TestClient, admin1: str, make_user: MakeUser, services: Services
) -> None:
    await make_bcs_user(client, admin1, "plain", "Bob@Example.com")
    bob = await make_user("bob@example.com")
    subjects = subjects_of(bob.id, bob.email)
    await grant(client, admin1, single("Bob@Example.com", "manager"))
    assert await services.authorizer.allowed(
        subjects, bob.id, Access("BCS-K8S-001", "x", "pods", "delete")
    )


async def test_a_linked_platform_admin_is_always_allowed_and_an_unlinked_name_only_by_grants(
    client: TestClient, admin1: str, make_user: MakeUser
) -> None:
    await make_user("ops@example.com", role="admin")
    ops = (await make_bcs_user(client, admin1, "plain", "ops@example.com"))["user_token"]
    assert await verify(client, admin1, ops, "DELETE") == {"allowed": True, "message": ""}
    loner = (await make_bcs_user(client, admin1, "plain", "loner"))["user_token"]
    assert (await verify(client, admin1, loner, "GET"))["allowed"] is False


async def test_only_a_platform_admins_api_key_counts_as_an_admin_token(
    client: TestClient, root: str, make_user: MakeUser
) -> None:
    assert await ok(client, "POST", "/users/saas/saas1", root)
    user = await make_user()
    await login(client, user)
    created = await client.post("/api/console/api-keys", json={"name": "not admin"})
    key = (await created.json())["api_key"]["key"]
    client.session.cookie_jar.clear()
    assert (await call(client, "GET", "/users/saas/saas1", key)) == (401, ANONYMOUS)
    # A console session is not a bk-bcs credential, even an admin's.
    admin = await make_user(role="admin")
    await login(client, admin)
    assert (await call(client, "GET", "/users/saas/saas1")) == (401, ANONYMOUS)


async def test_unknown_paths_methods_and_bad_names_answer_in_the_bk_bcs_envelope(
    client: TestClient, admin1: str
) -> None:
    message = await refused(client, "GET", "/nothing-here", admin1, 404)
    assert message == f"errcode: 1405061, no route for {BASE}/nothing-here"
    await refused(client, "PATCH", "/users/admin/admin1", admin1, 405)
    for name in ("a%20b", "-x", "x" * 129):
        await refused(client, "POST", f"/users/plain/{name}", admin1, 400)


async def test_no_token_or_credential_is_stored_in_plaintext(
    client: TestClient, admin1: str, db: Database
) -> None:
    secrets = {admin1}
    for kind, name in (("saas", "saas1"), ("plain", "xx"), ("plain", "yy")):
        secrets.add((await make_bcs_user(client, admin1, kind, name))["user_token"])
    secrets.add((await ok(client, "PUT", "/users/saas/saas1/refresh", admin1))["user_token"])
    register_token = await register(client, admin1)
    secrets.add(register_token)
    credentials = {
        "register_token": register_token,
        "server_addresses": "https://10.0.0.1:6443",
        "cacert_data": "-----BEGIN CERTIFICATE----- ca-secret-7f3a",
        "user_token": "sa-token-secret-9b2c",
    }
    await ok(client, "PUT", "/clusters/BCS-K8S-001/credentials", None, json=credentials)
    secrets |= {credentials["cacert_data"], credentials["user_token"]}
    await grant(client, admin1, SEED_PERMISSIONS)

    for table in (
        "bcs_users",
        "bcs_clusters",
        "bcs_register_tokens",
        "bcs_credentials",
        "roles",
        "role_assignments",
        "audit_events",
    ):
        dump = " ".join(str(dict(row)) for row in await db.fetch(f"SELECT * FROM {table}"))
        assert dump, table
        for secret in secrets:
            assert secret not in dump, table


async def test_a_grant_role_edited_elsewhere_is_put_back_by_the_next_grant(
    client: TestClient, admin1: str, db: Database
) -> None:
    xx = (await make_bcs_user(client, admin1, "plain", "xx"))["user_token"]
    await grant(client, admin1, single("xx", "viewer"))
    await db.execute("UPDATE roles SET verbs = '{*}' WHERE origin = 'bcs'")
    await grant(client, admin1, single("xx", "viewer"))
    assert await db.fetchval("SELECT verbs FROM roles WHERE origin = 'bcs'") == [
        "get",
        "list",
        "log",
    ]
    assert (await verify(client, admin1, xx, "DELETE"))["allowed"] is False


async def test_a_storage_failure_is_1405062_without_internals(
    client: TestClient, admin1: str, services: Services
) -> None:
    services.secrets = SecretBox([Fernet.generate_key()])  # stored tokens are unreadable now
    status, body = await call(client, "GET", "/users/admin/admin1", admin1)
    assert status == 500
    assert body == {
        "result": False,
        "code": 1405062,
        "message": "errcode: 1405062, internal error",
        "data": None,
    }
