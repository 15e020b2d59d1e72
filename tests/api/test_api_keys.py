"""API keys: created with the plaintext shown once, listed by prefix, revoked by id, and
accepted as ``Authorization: Bearer <key>`` or a bare ``Authorization: <key>``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from kubebyon.db.database import Database
from tests.api.conftest import MakeUser, User, login

KEYS = "/api/console/api-keys"


async def create_key(client: TestClient, **body: Any) -> dict[str, Any]:
    response = await client.post(KEYS, json={"name": "deploy bot", **body})
    assert response.status == 201, await response.text()
    key: dict[str, Any] = (await response.json())["api_key"]
    return key


async def me_with(client: TestClient, authorization: str) -> int:
    # A fresh request without the session cookie: only the key can authenticate it.
    client.session.cookie_jar.clear()
    response = await client.get("/api/console/me", headers={"Authorization": authorization})
    return response.status


async def test_a_key_is_shown_once_and_listed_by_prefix_only(
    client: TestClient, signed_in: User, db: Database
) -> None:
    created = await create_key(client)
    key = created["key"]
    assert key.startswith("kbk_")
    assert len(key) > 40
    assert created["prefix"] == key[:12]
    assert created["name"] == "deploy bot"
    assert created["expires_at"] is None
    assert created["last_used_at"] is None

    listed = (await (await client.get(KEYS)).json())["api_keys"]
    assert listed == [{k: v for k, v in created.items() if k != "key"}]
    assert key not in await (await client.get(KEYS)).text()
    stored = await db.fetchrow("SELECT * FROM api_keys WHERE id=$1", created["id"])
    assert stored is not None
    assert bytes(stored["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert key not in str(dict(stored))


async def test_creation_and_revocation_are_audited_by_name_and_prefix_only(
    client: TestClient, signed_in: User, db: Database
) -> None:
    created = await create_key(client)
    assert (await client.delete(f"{KEYS}/{created['id']}")).status == 200
    rows = await db.fetch(
        "SELECT * FROM audit_events WHERE resource_type='api_key' ORDER BY occurred_at, id"
    )
    assert [row["action"] for row in rows] == ["create", "delete"]
    for row in rows:
        assert row["actor_user_id"] == signed_in.id
        assert row["resource_id"] == created["id"]
        assert "deploy bot" in row["message"]
        assert row["extra"] == {"name": "deploy bot", "prefix": created["prefix"]}
        assert created["key"] not in str(dict(row))


@pytest.mark.parametrize("form", ["Bearer {key}", "bearer {key}", "{key}"])
async def test_a_key_authenticates_in_both_header_forms_and_records_its_use(
    client: TestClient, signed_in: User, db: Database, form: str
) -> None:
    created = await create_key(client)
    assert await me_with(client, form.format(key=created["key"])) == 200
    used = await db.fetchval("SELECT last_used_at FROM api_keys WHERE id=$1", created["id"])
    assert used is not None
    response = await client.get(
        "/api/console/me", headers={"Authorization": form.format(key=created["key"])}
    )
    assert (await response.json())["user"]["id"] == signed_in.id


@pytest.mark.parametrize(
    "authorization", ["Bearer kbk_not-a-real-key", "kbk_nope", "Basic dXNlcjpwYXNz", "Bearer "]
)
async def test_an_unknown_key_is_401(client: TestClient, authorization: str) -> None:
    response = await client.get("/api/console/me", headers={"Authorization": authorization})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_a_revoked_key_stops_working_and_is_no_longer_listed(
    client: TestClient, signed_in: User
) -> None:
    keep = await create_key(client, name="keep")
    gone = await create_key(client, name="gone")
    assert (await client.delete(f"{KEYS}/{gone['id']}")).status == 200
    assert [k["id"] for k in (await (await client.get(KEYS)).json())["api_keys"]] == [keep["id"]]
    # Revoking twice is a 404: there is nothing left to revoke.
    assert (await client.delete(f"{KEYS}/{gone['id']}")).status == 404
    assert await me_with(client, f"Bearer {gone['key']}") == 401
    assert await me_with(client, f"Bearer {keep['key']}") == 200


async def test_an_expired_key_is_401(client: TestClient, signed_in: User, db: Database) -> None:
    created = await create_key(client, expires_in_days=1)
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(days=1)
    assert await me_with(client, f"Bearer {created['key']}") == 200
    await db.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id=$1", created["id"]
    )
    assert await me_with(client, f"Bearer {created['key']}") == 401


async def test_a_banned_users_key_stops_working_at_once(
    client: TestClient, signed_in: User, db: Database
) -> None:
    created = await create_key(client)
    assert await me_with(client, f"Bearer {created['key']}") == 200
    await db.execute("UPDATE users SET status='banned' WHERE id=$1", signed_in.id)
    assert await me_with(client, f"Bearer {created['key']}") == 401


async def test_another_users_key_cannot_be_seen_or_revoked(
    client: TestClient, signed_in: User, make_user: MakeUser
) -> None:
    mine = await create_key(client)
    other = await make_user()
    await login(client, other)
    assert (await (await client.get(KEYS)).json())["api_keys"] == []
    response = await client.delete(f"{KEYS}/{mine['id']}")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    assert (await client.delete(f"{KEYS}/key_doesnotexist")).status == 404
    assert await me_with(client, f"Bearer {mine['key']}") == 200


async def test_a_key_can_drive_the_console_without_csrf_checks(
    client: TestClient, signed_in: User
) -> None:
    created = await create_key(client)
    client.session.cookie_jar.clear()
    response = await client.post(
        KEYS,
        json={"name": "made by a key"},
        headers={
            "Authorization": f"Bearer {created['key']}",
            "Origin": "https://evil.example",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert response.status == 201, await response.text()


async def test_expiry_may_be_a_future_time(client: TestClient, signed_in: User) -> None:
    when = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = await create_key(client, expires_at=when.isoformat())
    assert datetime.fromisoformat(created["expires_at"]) == when


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "k", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "k", "expires_in_days": "soon"}, "expires_in_days"),
        ({"name": "k", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "k", "expires_at": "2030-01-01T00:00:00Z", "expires_in_days": 3}, "(body)"),
        ({"name": "k", "key": "kbk_choose-my-own"}, "key"),
    ],
)
async def test_bad_create_requests_are_400_and_create_nothing(
    client: TestClient, signed_in: User, db: Database, body: dict[str, Any], field: str
) -> None:
    response = await client.post(KEYS, json=body)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(field)
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 0


async def test_last_used_at_is_shown_in_the_listing(client: TestClient, signed_in: User) -> None:
    created = await create_key(client)
    await client.get("/api/console/me", headers={"Authorization": f"Bearer {created['key']}"})
    listed = (await (await client.get(KEYS)).json())["api_keys"]
    assert listed[0]["last_used_at"] is not None
