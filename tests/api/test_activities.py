"""The activity stream: the caller's own audit events, and every user's for admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.ids import new_id
from tests.api.conftest import MakeUser, User, login

OWN = "/api/console/activities"
ADMIN = "/api/console/admin/activities"
NOW = datetime(2026, 5, 16, 12, 0, tzinfo=UTC)


async def add_event(
    db: Database,
    user_id: str | None,
    resource_type: str,
    action: str,
    *,
    minutes_ago: float,
    **columns: Any,
) -> str:
    event_id = new_id("evt")
    await db.execute(
        "INSERT INTO audit_events (id, occurred_at, actor_user_id, actor_type, actor_method,"
        " resource_type, resource_id, action, result, message, cluster_id, cluster_name,"
        " node_name) VALUES ($1, $2, $3, 'user', 'session', $4, $5, $6, $7, $8, $9, $10, $11)",
        event_id,
        NOW - timedelta(minutes=minutes_ago),
        user_id,
        resource_type,
        columns.get("resource_id"),
        action,
        columns.get("result", "success"),
        columns.get("message", f"{resource_type} {action}"),
        columns.get("cluster_id"),
        columns.get("cluster_name"),
        columns.get("node_name"),
    )
    return event_id


@pytest.fixture
async def clocked(services: Services, db: Database) -> Services:
    """The app's clock fixed at NOW, so relative times are exact."""
    services.now = lambda: NOW
    return services


async def activities(client: TestClient, path: str = OWN, **query: Any) -> list[dict[str, Any]]:
    response = await client.get(path, params={k: str(v) for k, v in query.items()})
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["activities"]
    return items


async def test_a_user_sees_only_their_own_events_newest_first(
    client: TestClient, signed_in: User, make_user: MakeUser, db: Database, clocked: Services
) -> None:
    await db.execute("DELETE FROM audit_events")
    other = await make_user()
    old = await add_event(db, signed_in.id, "api_key", "create", minutes_ago=90)
    new = await add_event(
        db,
        signed_in.id,
        "cluster",
        "create_requested",
        minutes_ago=3,
        cluster_id="cl_1",
        cluster_name="prod",
        node_name="n1",
        message="cluster prod requested",
    )
    await add_event(db, other.id, "session", "login", minutes_ago=1)
    await add_event(db, None, "system_settings", "update", minutes_ago=2)

    items = await activities(client)
    assert [item["id"] for item in items] == [new, old]
    assert items[0] == {
        "id": new,
        "type": "cluster_create_requested",
        "message": "cluster prod requested",
        "cluster_id": "cl_1",
        "cluster_name": "prod",
        "node_name": "n1",
        "occurred_at": "2026-05-16T11:57:00Z",
        "relative_time": "3 minutes ago",
    }
    assert items[1]["type"] == "api_key_create"
    assert items[1]["relative_time"] == "1 hour ago"


async def test_filters_apply_before_the_limit(
    client: TestClient, signed_in: User, db: Database, clocked: Services
) -> None:
    await db.execute("DELETE FROM audit_events")
    login_event = await add_event(db, signed_in.id, "session", "login", minutes_ago=30)
    for n in range(5):  # newer, not security-relevant
        await add_event(db, signed_in.id, "cluster", "create_requested", minutes_ago=n)
    key_event = await add_event(db, signed_in.id, "api_key", "create", minutes_ago=20)

    security = await activities(client, category="security", limit=1)
    assert [item["id"] for item in security] == [key_event]
    assert [i["id"] for i in await activities(client, category="security")] == [
        key_event,
        login_event,
    ]
    by_type = await activities(client, resource_type="session", limit=1)
    assert [item["id"] for item in by_type] == [login_event]
    by_action = await activities(client, action="login", limit=1)
    assert [item["id"] for item in by_action] == [login_event]
    both = await activities(client, category="security", resource_type="api_key", action="create")
    assert [item["id"] for item in both] == [key_event]
    assert await activities(client, resource_type="session", action="create") == []


async def test_an_unknown_category_is_an_empty_list(
    client: TestClient, signed_in: User, db: Database
) -> None:
    assert await activities(client)  # the login is there...
    assert await activities(client, category="billing") == []  # ...but not in this category
    assert await activities(client, category="security")


@pytest.mark.parametrize(
    ("limit", "expected"), [(None, 20), ("5", 5), ("1000", 100), ("0", 20), ("-3", 20), ("x", 20)]
)
async def test_limit_defaults_to_20_and_is_capped_at_100(
    client: TestClient,
    signed_in: User,
    db: Database,
    clocked: Services,
    limit: str | None,
    expected: int,
) -> None:
    for n in range(120):
        await add_event(db, signed_in.id, "cluster", "create_requested", minutes_ago=n)
    query = {} if limit is None else {"limit": limit}
    assert len(await activities(client, **query)) == expected


async def test_admins_see_every_users_events_with_the_audit_fields(
    client: TestClient, admin: User, make_user: MakeUser, db: Database, clocked: Services
) -> None:
    await db.execute("DELETE FROM audit_events")
    user = await make_user()
    failed = await add_event(
        db, user.id, "session", "login", minutes_ago=2, result="failure", resource_id=user.id
    )
    mine = await add_event(db, admin.id, "system_settings", "update", minutes_ago=1)
    await add_event(db, user.id, "cluster", "create_requested", minutes_ago=3)

    items = await activities(client, ADMIN)
    assert [item["id"] for item in items[:2]] == [mine, failed]
    assert len(items) == 3
    assert items[1] == {
        "id": failed,
        "type": "session_login",
        "message": "session login",
        "cluster_id": None,
        "cluster_name": None,
        "node_name": None,
        "occurred_at": "2026-05-16T11:58:00Z",
        "relative_time": "2 minutes ago",
        "actor_user_id": user.id,
        "actor_type": "user",
        "actor_method": "session",
        "resource_type": "session",
        "resource_id": user.id,
        "action": "login",
        "result": "failure",
    }
    security = await activities(client, ADMIN, category="security", limit=1)
    assert [item["id"] for item in security] == [mine]
    assert await activities(client, ADMIN, category="nope") == []
    tokens = await activities(client, ADMIN, category="security", resource_type="session")
    assert [item["id"] for item in tokens] == [failed]
    # The user-side list stays the admin's own.
    assert [item["id"] for item in await activities(client)] == [mine]


@pytest.mark.parametrize(("limit", "expected"), [(None, 100), ("600", 500), ("250", 250)])
async def test_admin_limit_defaults_to_100_and_is_capped_at_500(
    client: TestClient,
    admin: User,
    db: Database,
    clocked: Services,
    limit: str | None,
    expected: int,
) -> None:
    await db.execute(
        "INSERT INTO audit_events (id, occurred_at, actor_type, actor_method, resource_type,"
        " action, result, message)"
        " SELECT 'evt_' || n, now() - n * interval '1 second', 'system', 'system', 'cluster',"
        " 'create_requested', 'success', 'x' FROM generate_series(1, 600) AS n"
    )
    query = {} if limit is None else {"limit": limit}
    assert len(await activities(client, ADMIN, **query)) == expected


async def test_admin_activities_are_403_for_users_and_401_for_anonymous(
    client: TestClient, make_user: MakeUser
) -> None:
    assert (await client.get(ADMIN)).status == 401
    assert (await client.get(OWN)).status == 401
    await login(client, await make_user())
    response = await client.get(ADMIN)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


async def test_real_actions_show_up_in_the_stream(client: TestClient, signed_in: User) -> None:
    await client.post("/api/console/api-keys", json={"name": "ci"})
    await client.put("/api/console/me", json={"display_name": "Grace"})
    types = [item["type"] for item in await activities(client)]
    assert types[:3] == ["user_update_profile", "api_key_create", "session_login"]
