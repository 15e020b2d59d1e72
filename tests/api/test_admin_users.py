"""Admin user management: list/search/paging, ban and activate, login history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from kubebyon.domain.tokens import api_key_display_prefix, new_api_key, token_hash
from kubebyon.settings import Settings
from tests.api.conftest import MakeUser, User, login

USERS = "/api/console/admin/users"


@pytest.fixture
def settings() -> Settings:
    # These tests sign in more often than the per-IP login limit allows.
    return Settings(auth_rate_limit_burst=1000)


@pytest.fixture
async def other_client(services: Services) -> AsyncIterator[TestClient]:
    """A second browser: its own cookie jar, the same application state."""
    async with TestClient(TestServer(create_app(services))) as test_client:
        yield test_client


async def insert_api_key(db: Database, user: User) -> str:
    key = new_api_key()
    await db.execute(
        "INSERT INTO api_keys (id, user_id, name, prefix, key_hash) VALUES ($1,$2,$3,$4,$5)",
        new_id("key"),
        user.id,
        "ci",
        api_key_display_prefix(key),
        token_hash(key),
    )
    return key


async def test_admin_user_routes_refuse_anonymous_and_non_admin_callers(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    target = await make_user()
    calls = [
        ("GET", USERS, None),
        ("GET", f"{USERS}/{target.id}", None),
        ("PUT", f"{USERS}/{target.id}/status", {"status": "banned"}),
        ("GET", f"{USERS}/{target.id}/login-history", None),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body)
        assert response.status == 401, (method, path)
        assert (await response.json())["error"]["code"] == "unauthenticated"
    await login(client, await make_user())
    for method, path, body in calls:
        response = await client.request(method, path, json=body)
        assert response.status == 403, (method, path)
        assert (await response.json())["error"]["code"] == "forbidden"
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", target.id) == "active"


async def test_list_is_paged_newest_first_and_searchable_by_email(
    client: TestClient, admin: User, make_user: MakeUser, db: Database
) -> None:
    made = [await make_user(f"member{i:02d}@Example.com") for i in range(24)]
    # Distinct creation times, member23 the newest; the admin is older than all.
    for age, user in enumerate(reversed(made), start=1):
        await db.execute(
            "UPDATE users SET created_at = now() - make_interval(mins => $2) WHERE id = $1",
            user.id,
            age,
        )
    await db.execute(
        "UPDATE users SET created_at = now() - interval '1 day' WHERE id = $1", admin.id
    )

    first = await (await client.get(USERS)).json()
    assert first["total"] == 25 and first["page"] == 1 and first["page_size"] == 20
    emails = [u["email"] for u in first["users"]]
    assert emails == [f"member{i:02d}@Example.com" for i in range(23, 3, -1)]
    assert set(first["users"][0]) == {
        "id",
        "email",
        "display_name",
        "role",
        "status",
        "created_at",
        "last_login_at",
    }
    second = await (await client.get(USERS, params={"page": "2"})).json()
    assert [u["email"] for u in second["users"]] == [
        *(f"member{i:02d}@Example.com" for i in range(3, -1, -1)),
        admin.email,
    ]
    assert second["users"][-1]["last_login_at"] is not None  # the admin signed in

    found = await (await client.get(USERS, params={"q": "MEMBER1", "page_size": "3"})).json()
    assert found["total"] == 10
    assert [u["email"] for u in found["users"]] == [
        "member19@Example.com",
        "member18@Example.com",
        "member17@Example.com",
    ]
    # The search is a plain substring: LIKE wildcards match nothing special.
    assert (await (await client.get(USERS, params={"q": "%"})).json())["total"] == 0

    await db.execute("UPDATE users SET status = 'banned' WHERE id = $1", made[5].id)
    banned = await (await client.get(USERS, params={"status": "banned"})).json()
    assert [u["id"] for u in banned["users"]] == [made[5].id] and banned["total"] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": "101"},
        {"page_size": "0"},
        {"page": "0"},
        {"page": "two"},
        {"status": "sleeping"},
    ],
)
async def test_list_rejects_bad_query_parameters(
    client: TestClient, admin: User, params: dict[str, str]
) -> None:
    response = await client.get(USERS, params=params)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert next(iter(params)) in error["message"]


async def test_get_user_and_unknown_ids(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    user = await make_user("someone@example.com")
    body = await (await client.get(f"{USERS}/{user.id}")).json()
    assert body["user"]["email"] == "someone@example.com"
    assert body["user"]["role"] == "user" and body["user"]["status"] == "active"
    for path in (f"{USERS}/usr_nope", f"{USERS}/usr_nope/login-history"):
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    response = await client.put(f"{USERS}/usr_nope/status", json={"status": "banned"})
    assert response.status == 404


async def test_ban_takes_effect_at_once_and_activation_needs_a_new_sign_in(
    client: TestClient,
    other_client: TestClient,
    admin: User,
    make_user: MakeUser,
    db: Database,
) -> None:
    victim = await make_user()
    await login(other_client, victim)
    key = await insert_api_key(db, victim)
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await other_client.get("/api/console/me")).status == 200
    assert (await other_client.get("/api/console/me", headers=bearer)).status == 200

    response = await client.put(f"{USERS}/{victim.id}/status", json={"status": "banned"})
    assert response.status == 200
    assert (await response.json())["user"]["status"] == "banned"
    assert (await other_client.get("/api/console/me")).status == 401
    assert (await other_client.get("/api/console/me", headers=bearer)).status == 401
    relogin = await other_client.post(
        "/api/auth/login", json={"email": victim.email, "password": victim.password}
    )
    assert relogin.status == 403

    response = await client.put(f"{USERS}/{victim.id}/status", json={"status": "active"})
    assert response.status == 200
    assert (await response.json())["user"]["status"] == "active"
    # Sessions were ended by the ban; API keys were only suspended.
    assert (await other_client.get("/api/console/me")).status == 401
    assert (await other_client.get("/api/console/me", headers=bearer)).status == 200
    await login(other_client, victim)
    assert (await other_client.get("/api/console/me")).status == 200

    events = await db.fetch(
        "SELECT actor_user_id, actor_type, resource_type, resource_id, action, result"
        " FROM audit_events WHERE resource_type = 'user' ORDER BY occurred_at, id"
    )
    assert [dict(e) for e in events] == [
        {
            "actor_user_id": admin.id,
            "actor_type": "admin",
            "resource_type": "user",
            "resource_id": victim.id,
            "action": action,
            "result": "success",
        }
        for action in ("ban", "activate")
    ]


async def test_setting_the_current_status_again_changes_nothing(
    client: TestClient, admin: User, make_user: MakeUser, db: Database
) -> None:
    user = await make_user()
    response = await client.put(f"{USERS}/{user.id}/status", json={"status": "active"})
    assert response.status == 200
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE resource_type = 'user'") == 0


async def test_an_admin_cannot_ban_themselves(
    client: TestClient, admin: User, db: Database
) -> None:
    response = await client.put(f"{USERS}/{admin.id}/status", json={"status": "banned"})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "cannot_ban_self"
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", admin.id) == "active"
    assert (await client.get("/api/console/me")).status == 200


async def test_deleted_accounts_cannot_change_status(
    client: TestClient, admin: User, make_user: MakeUser, db: Database
) -> None:
    user = await make_user()
    await db.execute("UPDATE users SET status = 'deleted' WHERE id = $1", user.id)
    response = await client.put(f"{USERS}/{user.id}/status", json={"status": "active"})
    assert response.status == 409
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", user.id) == "deleted"


@pytest.mark.parametrize(
    "body", ['{"status": "deleted"}', "{}", '{"status": "banned", "extra": 1}', "{not json", "[]"]
)
async def test_status_update_rejects_bad_bodies(
    client: TestClient, admin: User, make_user: MakeUser, db: Database, body: str
) -> None:
    user = await make_user()
    response = await client.put(
        f"{USERS}/{user.id}/status", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert "error" in await response.json()
    assert await db.fetchval("SELECT status FROM users WHERE id = $1", user.id) == "active"


async def test_login_history_lists_failed_and_successful_sign_ins_newest_first(
    client: TestClient, other_client: TestClient, admin: User, make_user: MakeUser
) -> None:
    user = await make_user()
    failed = await other_client.post(
        "/api/auth/login",
        json={"email": user.email, "password": "not-the-password"},
        headers={"User-Agent": "agent-one"},
    )
    assert failed.status == 401
    ok = await other_client.post(
        "/api/auth/login",
        json={"email": user.email, "password": user.password},
        headers={"User-Agent": "agent-two"},
    )
    assert ok.status == 200

    response = await client.get(f"{USERS}/{user.id}/login-history")
    assert response.status == 200
    entries = (await response.json())["entries"]
    assert [(e["result"], e["method"], e["user_agent"], e["ip"]) for e in entries] == [
        ("success", "password", "agent-two", "127.0.0.1"),
        ("bad_credentials", "password", "agent-one", "127.0.0.1"),
    ]
    assert all(e["at"].endswith("Z") for e in entries)

    limited = await client.get(f"{USERS}/{user.id}/login-history", params={"limit": "1"})
    assert [e["user_agent"] for e in (await limited.json())["entries"]] == ["agent-two"]
    bad = await client.get(f"{USERS}/{user.id}/login-history", params={"limit": "0"})
    assert bad.status == 400
