"""The Kite RBAC dialect (seed 003) at /api/v1/admin/roles/: request bodies copied from
the seed, responses checked field by field, callers checked, and roles assigned here
changing what the authorization engine decides."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database, connect
from kubebyon.domain.authz import Access, subjects_of
from tests.api.conftest import MakeUser, User, login
from tests.support import wait_until

ROLES = "/api/v1/admin/roles/"
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# Seed 003, "创建角色" and "分配角色".
NAMESPACE_EDITOR = {
    "name": "namespace-editor",
    "description": "Edit workloads in dev",
    "clusters": ["demo-cluster"],
    "namespaces": ["dev"],
    "resources": ["deployments", "pods", "services"],
    "verbs": ["get", "create", "update", "delete", "log"],
}
PLATFORM_TEAM = {"subjectType": "group", "subject": "platform-team"}
ALICE = {"subjectType": "user", "subject": "alice"}


class Kite:
    """Calls the dialect as a Kite client does: an API key in the Authorization header."""

    def __init__(self, client: TestClient, key: str, *, bearer: bool = False) -> None:
        self.client = client
        self.authorization = f"Bearer {key}" if bearer else key

    async def call(
        self, method: str, path: str = "", body: Any = None, *, expect: int = 200
    ) -> Any:
        url = path if path.startswith("/") else ROLES + path
        response = await self.client.request(
            method, url, json=body, headers={"Authorization": self.authorization}
        )
        assert response.status == expect, await response.text()
        return await response.json()


async def api_key_of(client: TestClient, user: User) -> str:
    """A real key, created through the console API while signed in as ``user``."""
    client.session.cookie_jar.clear()
    await login(client, user)
    response = await client.post("/api/console/api-keys", json={"name": "kite"})
    assert response.status == 201, await response.text()
    key: str = (await response.json())["api_key"]["key"]
    client.session.cookie_jar.clear()
    return key


@pytest.fixture
async def kite(client: TestClient, make_user: MakeUser) -> Kite:
    """A platform admin's API key, sent bare as in the seed's curl examples."""
    return Kite(client, await api_key_of(client, await make_user(role="admin")))


@pytest.fixture
async def user(make_user: MakeUser) -> User:
    return await make_user("dev@example.com")


def assert_timestamp(value: str) -> datetime:
    assert RFC3339_Z.match(value), value
    return datetime.fromisoformat(value)


def assert_error(body: Any, message: str | None = None) -> None:
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]
    if message is not None:
        assert body["error"] == message


# --- the seed's examples ---------------------------------------------------------------


async def test_the_list_holds_the_system_roles_as_in_the_seed(kite: Kite) -> None:
    roles = (await kite.call("GET"))["roles"]
    assert [role["id"] for role in roles] == [1, 2]
    viewer = roles[1]
    assert set(viewer) == {
        "id",
        "name",
        "description",
        "isSystem",
        "clusters",
        "namespaces",
        "resources",
        "verbs",
        "assignments",
        "createdAt",
        "updatedAt",
    }
    assert viewer["id"] == 2
    assert viewer["name"] == "viewer"
    assert viewer["description"] == "Viewer role with read-only access"
    assert viewer["isSystem"] is True
    assert viewer["clusters"] == ["*"]
    assert viewer["namespaces"] == ["*"]
    assert viewer["resources"] == ["*"]
    assert viewer["verbs"] == ["get", "log"]
    assert viewer["assignments"] == []
    assert_timestamp(viewer["createdAt"])
    assert_timestamp(viewer["updatedAt"])
    admin = roles[0]
    assert (admin["name"], admin["isSystem"], admin["verbs"]) == ("admin", True, ["*"])


async def test_both_paths_and_both_header_forms_answer_the_same(
    client: TestClient, kite: Kite
) -> None:
    expected = await kite.call("GET")
    bearer = Kite(client, kite.authorization, bearer=True)
    for caller in (kite, bearer):
        assert await caller.call("GET", ROLES) == expected
        assert await caller.call("GET", ROLES.rstrip("/")) == expected
    # Creating works on both forms of the collection path too.
    first = await kite.call("POST", ROLES.rstrip("/"), NAMESPACE_EDITOR, expect=201)
    second = await bearer.call("POST", ROLES, {**NAMESPACE_EDITOR, "name": "ops"}, expect=201)
    assert (first["role"]["id"], second["role"]["id"]) == (3, 4)


async def test_creating_the_seeds_namespace_editor(kite: Kite) -> None:
    role = (await kite.call("POST", "", NAMESPACE_EDITOR, expect=201))["role"]
    assert role["id"] == 3  # the first created role, as in the seed's examples
    assert role["name"] == "namespace-editor"
    assert role["description"] == "Edit workloads in dev"
    assert role["isSystem"] is False
    assert role["clusters"] == ["demo-cluster"]
    assert role["namespaces"] == ["dev"]
    assert role["resources"] == ["deployments", "pods", "services"]
    assert role["verbs"] == ["get", "create", "update", "delete", "log"]
    assert role["assignments"] == []
    assert assert_timestamp(role["createdAt"]) == assert_timestamp(role["updatedAt"])

    assert await kite.call("GET", "3") == {"role": role}
    assert [r["id"] for r in (await kite.call("GET"))["roles"]] == [1, 2, 3]


async def test_updating_replaces_every_field(kite: Kite) -> None:
    created = (await kite.call("POST", "", NAMESPACE_EDITOR, expect=201))["role"]
    # "请求体字段与创建角色时一致": a field left out is emptied, not kept.
    body = {
        "name": "dev-reader",
        "description": "Read dev and staging",
        "clusters": ["demo-cluster"],
        "namespaces": ["dev", "staging"],
        "verbs": ["get", "list", "log"],
    }
    role = (await kite.call("PUT", "3", body))["role"]
    assert role["id"] == 3
    assert role["name"] == "dev-reader"
    assert role["description"] == "Read dev and staging"
    assert role["clusters"] == ["demo-cluster"]
    assert role["namespaces"] == ["dev", "staging"]
    assert role["resources"] == []
    assert role["verbs"] == ["get", "list", "log"]
    assert role["isSystem"] is False
    assert role["createdAt"] == created["createdAt"]
    assert assert_timestamp(role["updatedAt"]) > assert_timestamp(created["updatedAt"])
    assert await kite.call("GET", "3") == {"role": role}


async def test_a_role_sent_back_as_read_is_accepted_and_cannot_make_itself_system(
    kite: Kite,
) -> None:
    role = (await kite.call("POST", "", NAMESPACE_EDITOR, expect=201))["role"]
    await kite.call("POST", "3/assign", PLATFORM_TEAM, expect=201)
    echoed = {**role, "description": "changed", "isSystem": True, "id": 99, "assignments": []}
    updated = (await kite.call("PUT", "3", echoed))["role"]
    assert updated["id"] == 3
    assert updated["description"] == "changed"
    assert updated["isSystem"] is False
    assert [a["subject"] for a in updated["assignments"]] == ["platform-team"]
    await kite.call("DELETE", "3")  # still an ordinary, deletable role


async def test_deleting_a_role_as_in_the_seed(kite: Kite, db: Database) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    await kite.call("POST", "3/assign", PLATFORM_TEAM, expect=201)
    assert await kite.call("DELETE", "3") == {"success": True}
    assert_error(await kite.call("GET", "3", expect=404), "role not found")
    assert await db.fetchval("SELECT count(*) FROM role_assignments WHERE role_id = 3") == 0
    assert_error(await kite.call("DELETE", "3", expect=404), "role not found")
    assert [r["id"] for r in (await kite.call("GET"))["roles"]] == [1, 2]


async def test_assigning_and_unassigning_as_in_the_seed(kite: Kite, db: Database) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    assignment = (await kite.call("POST", "3/assign", PLATFORM_TEAM, expect=201))["assignment"]
    assert set(assignment) == {"id", "roleId", "subjectType", "subject", "createdAt"}
    assert isinstance(assignment["id"], int)
    assert assignment["roleId"] == 3
    assert assignment["subjectType"] == "group"
    assert assignment["subject"] == "platform-team"
    assert_timestamp(assignment["createdAt"])

    # Repeated: the existing assignment, with 200, and no duplicate.
    again = await kite.call("POST", "3/assign", PLATFORM_TEAM)
    assert again == {"assignment": assignment}
    alice = (await kite.call("POST", "3/assign", ALICE, expect=201))["assignment"]
    assert (alice["subjectType"], alice["subject"]) == ("user", "alice")
    role = (await kite.call("GET", "3"))["role"]
    assert role["assignments"] == [assignment, alice]
    listed = (await kite.call("GET"))["roles"]
    assert listed[2]["assignments"] == [assignment, alice]
    assert await db.fetchval("SELECT count(*) FROM role_assignments WHERE role_id = 3") == 2

    unassign = "3/assign?subjectType=group&subject=platform-team"
    assert await kite.call("DELETE", unassign) == {"success": True}
    assert (await kite.call("GET", "3"))["role"]["assignments"] == [alice]
    assert_error(await kite.call("DELETE", unassign, expect=404), "assignment not found")
    assert await kite.call("DELETE", "3/assign?subjectType=user&subject=alice") == {"success": True}


async def test_an_email_subject_matches_whatever_its_case(
    kite: Kite, services: Services, user: User
) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    body = {"subjectType": "user", "subject": " Dev@Example.COM "}
    assignment = (await kite.call("POST", "3/assign", body, expect=201))["assignment"]
    assert assignment["subject"] == "dev@example.com"
    access = Access("demo-cluster", "dev", "pods", "get")
    assert await services.authorizer.allowed(subjects_of(user.id, user.email), user.id, access)
    await kite.call("DELETE", "3/assign?subjectType=user&subject=DEV@example.com")
    assert not await services.authorizer.allowed(subjects_of(user.id, user.email), user.id, access)


# --- system roles ------------------------------------------------------------------------


@pytest.mark.parametrize("role_id", ["1", "2"])
async def test_system_roles_refuse_edit_and_delete_but_can_be_assigned(
    kite: Kite, role_id: str
) -> None:
    before = await kite.call("GET", role_id)
    edited = {**NAMESPACE_EDITOR, "name": before["role"]["name"]}
    assert_error(await kite.call("PUT", role_id, edited, expect=403))
    assert_error(await kite.call("DELETE", role_id, expect=403))
    assert await kite.call("GET", role_id) == before
    assignment = await kite.call("POST", f"{role_id}/assign", ALICE, expect=201)
    assert assignment["assignment"]["roleId"] == int(role_id)
    await kite.call("DELETE", f"{role_id}/assign?subjectType=user&subject=alice")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**PLATFORM_TEAM, "subjectType": "robot"}, "subjectType must be 'user' or 'group'"),
        ({**PLATFORM_TEAM, "subjectType": "User"}, "subjectType must be 'user' or 'group'"),
        ({"subject": "platform-team"}, "subjectType must be 'user' or 'group'"),
        ({**PLATFORM_TEAM, "subject": ""}, "subject is required"),
        ({**PLATFORM_TEAM, "subject": "   "}, "subject is required"),
        ({"subjectType": "group"}, "subject is required"),
        ({**PLATFORM_TEAM, "subject": ["platform-team"]}, None),
    ],
)
async def test_bad_assignments_are_400(
    kite: Kite, db: Database, body: dict[str, Any], message: str | None
) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    assert_error(await kite.call("POST", "3/assign", body, expect=400), message)
    assert await db.fetchval("SELECT count(*) FROM role_assignments") == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "role name is required"),
        ({"name": "   "}, "role name is required"),
        ({"name": None}, None),
        ({"name": "bad\nname"}, "role name must be printable text"),
        ({"verbs": ["get", "patch"]}, None),
        ({"verbs": ["GET"]}, None),
        ({"verbs": ["!"]}, None),
        ({"clusters": [""]}, None),
        ({"namespaces": [" dev"]}, None),
        ({"resources": ["!!pods"]}, None),
        ({"verbs": "get"}, None),
        ({"clusters": [1]}, None),
        ({"name": "x" * 101}, None),
    ],
)
async def test_bad_roles_are_400_on_create_and_update(
    kite: Kite, change: dict[str, Any], message: str | None
) -> None:
    body = {**NAMESPACE_EDITOR, **change}
    assert_error(await kite.call("POST", "", body, expect=400), message)
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    assert_error(await kite.call("PUT", "3", body, expect=400), message)
    assert (await kite.call("GET", "3"))["role"]["verbs"] == NAMESPACE_EDITOR["verbs"]
    assert [r["id"] for r in (await kite.call("GET"))["roles"]] == [1, 2, 3]


async def test_a_missing_name_and_an_unknown_verb_say_so(kite: Kite) -> None:
    without_name = {k: v for k, v in NAMESPACE_EDITOR.items() if k != "name"}
    assert_error(await kite.call("POST", "", without_name, expect=400), "role name is required")
    body = {**NAMESPACE_EDITOR, "verbs": ["get", "patch"]}
    error = (await kite.call("POST", "", body, expect=400))["error"]
    assert "unknown verb 'patch'" in error


async def test_denied_verbs_wildcards_and_globs_are_accepted(kite: Kite) -> None:
    body = {
        "name": "all-but-delete",
        "clusters": ["demo-*"],
        "namespaces": ["*", "!kube-system"],
        "resources": ["*"],
        "verbs": ["*", "!delete", "!exec"],
    }
    role = (await kite.call("POST", "", body, expect=201))["role"]
    assert role["verbs"] == ["*", "!delete", "!exec"]
    assert role["description"] == ""


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", ""), ("PUT", "3"), ("POST", "3/assign")],
)
async def test_malformed_json_is_400(
    client: TestClient, kite: Kite, method: str, path: str
) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    for raw in (b'{"name": "x",', b"[1, 2]", b""):
        response = await client.request(
            method,
            ROLES + path,
            data=raw,
            headers={"Authorization": kite.authorization, "Content-Type": "application/json"},
        )
        assert response.status == 400
        assert_error(await response.json())
    assert len((await kite.call("GET"))["roles"]) == 3


async def test_duplicate_names_are_409(kite: Kite) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    assert_error(await kite.call("POST", "", NAMESPACE_EDITOR, expect=409))
    assert_error(await kite.call("POST", "", {**NAMESPACE_EDITOR, "name": "viewer"}, expect=409))
    assert_error(await kite.call("POST", "", {**NAMESPACE_EDITOR, "name": "viewer "}, expect=409))
    other = await kite.call("POST", "", {**NAMESPACE_EDITOR, "name": "other"}, expect=201)
    path = str(other["role"]["id"])
    assert_error(await kite.call("PUT", path, NAMESPACE_EDITOR, expect=409))
    assert (await kite.call("GET", path))["role"]["name"] == "other"
    # Keeping one's own name is not a conflict.
    await kite.call("PUT", path, {**NAMESPACE_EDITOR, "name": "other"})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "{id}", None),
        ("PUT", "{id}", NAMESPACE_EDITOR),
        ("DELETE", "{id}", None),
        ("POST", "{id}/assign", PLATFORM_TEAM),
        ("DELETE", "{id}/assign?subjectType=group&subject=platform-team", None),
    ],
)
async def test_unknown_and_malformed_role_ids(
    kite: Kite, method: str, path: str, body: Any
) -> None:
    for role_id in ("3", "0", "99999999999"):
        response = await kite.call(method, path.format(id=role_id), body, expect=404)
        assert_error(response, "role not found")
    for role_id in ("abc", "-1", "1.5", "%C2%B3"):
        response = await kite.call(method, path.format(id=role_id), body, expect=400)
        assert_error(response, "invalid role id")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "subjectType must be 'user' or 'group'"),
        ("?subjectType=group", "subject is required"),
        ("?subjectType=robot&subject=platform-team", "subjectType must be 'user' or 'group'"),
    ],
)
async def test_unassigning_needs_a_subject(kite: Kite, query: str, message: str) -> None:
    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    await kite.call("POST", "3/assign", PLATFORM_TEAM, expect=201)
    assert_error(await kite.call("DELETE", f"3/assign{query}", expect=400), message)
    assert len((await kite.call("GET", "3"))["role"]["assignments"]) == 1


# --- callers -------------------------------------------------------------------------------

EVERY_ROUTE = [
    ("GET", ROLES, None),
    ("GET", ROLES.rstrip("/"), None),
    ("POST", ROLES, NAMESPACE_EDITOR),
    ("POST", ROLES.rstrip("/"), NAMESPACE_EDITOR),
    ("GET", ROLES + "2", None),
    ("PUT", ROLES + "2", NAMESPACE_EDITOR),
    ("DELETE", ROLES + "2", None),
    ("POST", ROLES + "2/assign", ALICE),
    ("DELETE", ROLES + "2/assign?subjectType=user&subject=alice", None),
]


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ROUTE)
async def test_anonymous_callers_and_unknown_keys_are_401(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"Authorization": "kbk_not-a-key"}, {"Authorization": "Bearer nope"}):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status == 401
        assert_error(await response.json())


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ROUTE)
async def test_signed_in_non_admins_are_403_by_session_and_by_key(
    client: TestClient, user: User, db: Database, method: str, path: str, body: Any
) -> None:
    key = await api_key_of(client, user)
    response = await client.request(method, path, json=body, headers={"Authorization": key})
    assert response.status == 403
    assert_error(await response.json(), "admin role required")
    await login(client, user)
    response = await client.request(method, path, json=body)
    assert response.status == 403
    assert_error(await response.json(), "admin role required")
    assert await db.fetchval("SELECT count(*) FROM roles") == 2
    assert await db.fetchval("SELECT count(*) FROM role_assignments") == 0


async def test_platform_admins_can_use_their_session(client: TestClient, admin: User) -> None:
    response = await client.post(ROLES, json=NAMESPACE_EDITOR)
    assert response.status == 201, await response.text()
    response = await client.get(ROLES.rstrip("/"))
    assert [r["name"] for r in (await response.json())["roles"]][-1] == "namespace-editor"


async def test_cookie_writes_from_another_site_are_refused(
    client: TestClient, admin: User, db: Database
) -> None:
    response = await client.post(
        ROLES, json=NAMESPACE_EDITOR, headers={"Origin": "https://evil.example"}
    )
    assert response.status == 403
    assert_error(await response.json())
    assert await db.fetchval("SELECT count(*) FROM roles") == 2


@pytest.mark.parametrize("subject", ["id", "email"])
async def test_the_admin_role_assigned_via_kite_grants_kite_and_revoking_it_removes_it(
    client: TestClient, kite: Kite, user: User, subject: str
) -> None:
    mine = Kite(client, await api_key_of(client, user), bearer=True)
    assert_error(await mine.call("GET", expect=403))
    name = user.id if subject == "id" else user.email
    await kite.call("POST", "1/assign", {"subjectType": "user", "subject": name}, expect=201)

    roles = (await mine.call("GET"))["roles"]
    assert [a["subject"] for a in roles[0]["assignments"]] == [name]
    await mine.call("POST", "", NAMESPACE_EDITOR, expect=201)
    # Still not a platform admin: the console's admin routes stay closed.
    response = await client.get(
        "/api/console/admin/users", headers={"Authorization": mine.authorization}
    )
    assert response.status == 403

    await kite.call("DELETE", f"1/assign?subjectType=user&subject={name}")
    assert_error(await mine.call("GET", expect=403), "admin role required")


async def test_the_admin_role_can_come_through_a_group_of_the_session(
    client: TestClient, kite: Kite, user: User, db: Database
) -> None:
    await login(client, user)
    await db.execute(
        "UPDATE sessions SET groups = $2 WHERE user_id = $1", user.id, ["platform-team"]
    )
    assert (await client.get(ROLES)).status == 403
    await kite.call("POST", "1/assign", PLATFORM_TEAM, expect=201)
    response = await client.get(ROLES)
    assert response.status == 200
    response = await client.post(ROLES, json=NAMESPACE_EDITOR)
    assert response.status == 201
    await kite.call("DELETE", "1/assign?subjectType=group&subject=platform-team")
    assert (await client.get(ROLES)).status == 403


# --- the engine sees what Kite writes --------------------------------------------------------


async def test_roles_written_via_kite_change_authorization_decisions(
    kite: Kite, services: Services, user: User
) -> None:
    authorizer = services.authorizer
    alone = subjects_of(user.id, user.email)
    in_team = subjects_of(user.id, user.email, ["platform-team"])
    create_pod = Access("demo-cluster", "dev", "pods", "create")

    async def may(subjects: Any, access: Access = create_pod) -> bool:
        return await authorizer.allowed(subjects, user.id, access)

    await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
    assert not await may(alone)  # decided, and cached, before the assignment
    assert not await may(in_team)

    await kite.call("POST", "3/assign", {"subjectType": "user", "subject": user.id}, expect=201)
    assert await may(alone)
    assert not await may(alone, Access("demo-cluster", "prod", "pods", "create"))
    assert not await may(alone, Access("demo-cluster", "dev", "secrets", "get"))
    assert not await may(alone, Access("demo-cluster", "dev", "pods", "exec"))
    assert not await may(alone, Access("other-cluster", "dev", "pods", "get"))

    await kite.call("DELETE", f"3/assign?subjectType=user&subject={user.id}")
    assert not await may(alone)
    await kite.call("POST", "3/assign", PLATFORM_TEAM, expect=201)
    assert await may(in_team)
    assert not await may(alone)

    await kite.call("PUT", "3", {**NAMESPACE_EDITOR, "verbs": ["get", "log"]})
    assert not await may(in_team)
    assert await may(in_team, Access("demo-cluster", "dev", "pods", "log"))

    await kite.call("DELETE", "3")
    assert not await may(in_team, Access("demo-cluster", "dev", "pods", "log"))

    await kite.call("POST", "2/assign", ALICE, expect=201)  # the system viewer role
    alice = subjects_of("usr_alice", "alice@example.com", aliases=["alice"])
    assert await authorizer.allowed(alice, None, Access("any", "ns", "pods", "get"))
    assert not await authorizer.allowed(alice, None, Access("any", "ns", "pods", "delete"))


async def test_every_write_notifies_other_replicas_and_is_audited(
    kite: Kite, dsn: str, db: Database
) -> None:
    payloads: list[str] = []
    listener = await connect(dsn)
    try:
        await listener.add_listener("kubebyon_wakeup", lambda *args: payloads.append(str(args[-1])))
        await kite.call("POST", "", NAMESPACE_EDITOR, expect=201)
        await kite.call("PUT", "3", {**NAMESPACE_EDITOR, "description": "v2"})
        await kite.call("POST", "3/assign", PLATFORM_TEAM, expect=201)
        await kite.call("POST", "3/assign", PLATFORM_TEAM)  # no change, no notice
        await kite.call("DELETE", "3/assign?subjectType=group&subject=platform-team")
        await kite.call("DELETE", "3")
        await kite.call("PUT", "1", NAMESPACE_EDITOR, expect=403)  # refused, no notice
        # Notices arrive in commit order: once this marker is in, every notice is.
        await db.execute("SELECT pg_notify('kubebyon_wakeup', 'marker')")
        await wait_until(lambda: "marker" in payloads, what="the marker notice")
        assert payloads == ["authz"] * 5 + ["marker"]
    finally:
        await listener.close()

    rows = await db.fetch(
        "SELECT * FROM audit_events WHERE resource_type = 'role' ORDER BY occurred_at, id"
    )
    assert [row["action"] for row in rows] == ["create", "update", "assign", "unassign", "delete"]
    for row in rows:
        assert row["resource_id"] == "3"
        assert row["actor_type"] == "admin"
        assert row["actor_method"] == "api_key"
        assert "namespace-editor" in row["message"]
        assert kite.authorization not in json.dumps(dict(row), default=str)
    assert "platform-team" in rows[2]["message"]
    assert "platform-team" in rows[3]["message"]
