"""Admin system settings: write-only secrets, partial updates, validation, audit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from tests.api.conftest import MakeUser, User, login

PATH = "/api/console/admin/system-settings"
OAUTH_SECRET = "oauth-client-secret-4f1c"
CAPTCHA_SECRET = "0xhcaptcha-secret-9a7e"
SMTP_PASSWORD = "smtp-password-77d2"

FULL: dict[str, Any] = {
    "public_base_url": "https://console.example.com/",
    "join_base_url": "https://join.example.com",
    "managed_workload_ingress_base_domain": "Apps.Example.com.",
    "oauth_providers": [
        {
            "name": "github",
            "kind": "github",
            "display_name": "GitHub",
            "client_id": "gh-client",
            "client_secret": OAUTH_SECRET,
            "client_secret_changed": True,
            "scopes": ["read:user", "user:email"],
        },
        {
            "name": "corp",
            "kind": "oidc",
            "display_name": "Corp SSO",
            "client_id": "corp-client",
            "issuer": "https://idp.example.com/realms/corp/",
        },
    ],
    "hcaptcha": {
        "enabled": False,
        "site_key": "site-key-1",
        "secret": CAPTCHA_SECRET,
        "secret_changed": True,
    },
    "smtp": {
        "host": "smtp.example.com",
        "port": 2525,
        "username": "mailer",
        "password": SMTP_PASSWORD,
        "password_changed": True,
        "from_address": "noreply@example.com",
        "security": "tls",
    },
}


async def put(client: TestClient, body: Any) -> Any:
    response = await client.put(PATH, json=body)
    assert response.status == 200, await response.text()
    return await response.json()


async def stored(db: Database) -> dict[str, Any]:
    document: dict[str, Any] = await db.fetchval("SELECT document FROM system_settings")
    return document


def assert_no_secret(body: Any, *secrets: str) -> None:
    text = json.dumps(body)
    for secret in secrets:
        assert secret not in text
    assert "_encrypted" not in text and '"secret"' not in text and '"password"' not in text


async def test_system_settings_refuse_anonymous_and_non_admin_callers(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    before = await stored(db)
    for method in ("GET", "PUT"):
        response = await client.request(method, PATH, json={"public_base_url": "https://x.io"})
        assert response.status == 401
    await login(client, await make_user())
    for method in ("GET", "PUT"):
        response = await client.request(method, PATH, json={"public_base_url": "https://x.io"})
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden"
    assert await stored(db) == before


async def test_defaults_read_back_without_secrets(client: TestClient, admin: User) -> None:
    body = await (await client.get(PATH)).json()
    assert body["public_base_url"] is None and body["oauth_providers"] == []
    assert body["hcaptcha"] == {"enabled": False, "site_key": "", "secret_configured": False}
    assert body["smtp"]["password_configured"] is False and body["smtp"]["port"] == 587


async def test_full_update_stores_secrets_encrypted_and_never_returns_them(
    client: TestClient, admin: User, services: Services, db: Database
) -> None:
    written = await put(client, FULL)
    read = await (await client.get(PATH)).json()
    assert written == read
    for body in (written, read):
        assert_no_secret(body, OAUTH_SECRET, CAPTCHA_SECRET, SMTP_PASSWORD)
    assert read["public_base_url"] == "https://console.example.com"
    assert read["managed_workload_ingress_base_domain"] == "apps.example.com"
    github, corp = read["oauth_providers"]
    assert github["client_secret_configured"] is True and github["scopes"] == [
        "read:user",
        "user:email",
    ]
    assert corp["client_secret_configured"] is False
    assert corp["issuer"] == "https://idp.example.com/realms/corp/"
    assert read["hcaptcha"]["secret_configured"] is True
    assert read["smtp"] == {
        "host": "smtp.example.com",
        "port": 2525,
        "username": "mailer",
        "from_address": "noreply@example.com",
        "security": "tls",
        "password_configured": True,
    }
    assert read["updated_at"].endswith("Z")

    document = await stored(db)
    assert OAUTH_SECRET not in json.dumps(document)
    box = services.secrets
    assert box.decrypt(document["oauth_providers"][0]["client_secret_encrypted"]) == OAUTH_SECRET
    assert box.decrypt(document["hcaptcha"]["secret_encrypted"]) == CAPTCHA_SECRET
    assert box.decrypt(document["smtp"]["password_encrypted"]) == SMTP_PASSWORD
    assert await db.fetchval("SELECT updated_by FROM system_settings") == admin.id


async def test_secrets_are_kept_without_changed_replaced_with_it_and_cleared_when_empty(
    client: TestClient, admin: User, services: Services, db: Database
) -> None:
    await put(client, FULL)
    box = services.secrets

    def secrets(document: dict[str, Any]) -> tuple[str | None, ...]:
        values = (
            document["oauth_providers"][0]["client_secret_encrypted"],
            document["hcaptcha"]["secret_encrypted"],
            document["smtp"]["password_encrypted"],
        )
        return tuple(box.decrypt(v) if v else None for v in values)

    github = FULL["oauth_providers"][0]
    # A value without x_changed is ignored: the stored secrets stay.
    await put(
        client,
        {
            "oauth_providers": [
                {**github, "client_secret": "other", "client_secret_changed": False}
            ],
            "hcaptcha": {"secret": "other"},
            "smtp": {"password": "other", "password_configured": True},
        },
    )
    assert secrets(await stored(db)) == (OAUTH_SECRET, CAPTCHA_SECRET, SMTP_PASSWORD)

    await put(
        client,
        {
            "oauth_providers": [{**github, "client_secret": "new-oauth"}],
            "hcaptcha": {"secret": "new-captcha", "secret_changed": True},
            "smtp": {"password": "new-smtp", "password_changed": True},
        },
    )
    assert secrets(await stored(db)) == ("new-oauth", "new-captcha", "new-smtp")

    body = await put(
        client,
        {
            "oauth_providers": [{**github, "client_secret": "", "client_secret_changed": True}],
            "hcaptcha": {"secret": "", "secret_changed": True},
            "smtp": {"password_changed": True},
        },
    )
    assert secrets(await stored(db)) == (None, None, None)
    assert body["oauth_providers"][0]["client_secret_configured"] is False
    assert body["hcaptcha"]["secret_configured"] is False
    assert body["smtp"]["password_configured"] is False


async def test_providers_are_matched_by_name_and_the_list_replaces_the_stored_one(
    client: TestClient, admin: User, db: Database
) -> None:
    await put(client, FULL)
    github = {k: v for k, v in FULL["oauth_providers"][0].items() if "secret" not in k}
    body = await put(
        client,
        {
            "oauth_providers": [
                {**github, "display_name": "GitHub.com"},
                {**github, "name": "github-two"},
            ]
        },
    )
    assert [
        (p["name"], p["display_name"], p["client_secret_configured"])
        for p in body["oauth_providers"]
    ] == [
        ("github", "GitHub.com", True),
        ("github-two", "GitHub", False),
    ]
    assert (await put(client, {"oauth_providers": []}))["oauth_providers"] == []
    assert (await stored(db))["oauth_providers"] == []


async def test_omitted_sections_and_fields_keep_their_values(
    client: TestClient, admin: User
) -> None:
    before = await put(client, FULL)
    after = await put(client, {"join_base_url": "http://127.0.0.1:8080", "smtp": {"port": 25}})
    assert after["join_base_url"] == "http://127.0.0.1:8080"
    assert after["smtp"] == {**before["smtp"], "port": 25}
    for unchanged in ("public_base_url", "oauth_providers", "hcaptcha"):
        assert after[unchanged] == before[unchanged]
    cleared = await put(
        client, {"public_base_url": None, "managed_workload_ingress_base_domain": ""}
    )
    assert cleared["public_base_url"] is None
    assert cleared["managed_workload_ingress_base_domain"] is None


async def test_what_a_get_returns_can_be_sent_back_unchanged(
    client: TestClient, admin: User
) -> None:
    first = await put(client, FULL)
    again = await put(client, first)
    assert {k: v for k, v in again.items() if k != "updated_at"} == {
        k: v for k, v in first.items() if k != "updated_at"
    }


def provider(**fields: Any) -> dict[str, Any]:
    return {
        "name": "corp",
        "kind": "oidc",
        "client_id": "c",
        "issuer": "https://idp.example.com",
        **fields,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"public_base_url": "ftp://console.example.com"}, "public_base_url"),
        ({"public_base_url": "console.example.com"}, "public_base_url"),
        ({"public_base_url": "https://console.example.com/app"}, "public_base_url"),
        ({"public_base_url": "https://console.example.com/?a=1"}, "public_base_url"),
        ({"join_base_url": "https://join.example.com#top"}, "join_base_url"),
        (
            {"managed_workload_ingress_base_domain": "not a domain"},
            "managed_workload_ingress_base_domain",
        ),
        (
            {"managed_workload_ingress_base_domain": "10.0.0.1"},
            "managed_workload_ingress_base_domain",
        ),
        (
            {"managed_workload_ingress_base_domain": "localhost"},
            "managed_workload_ingress_base_domain",
        ),
        ({"oauth_providers": [provider(name="Corp SSO")]}, "oauth_providers.0.name"),
        ({"oauth_providers": [provider(kind="saml")]}, "oauth_providers.0.kind"),
        (
            {"oauth_providers": [provider(issuer="http://idp.example.com")]},
            "oauth_providers.0.issuer",
        ),
        ({"oauth_providers": [provider(issuer=None)]}, "oauth_providers.0.issuer"),
        (
            {"oauth_providers": [provider(kind="github", client_id="")]},
            "oauth_providers.0.client_id",
        ),
        ({"oauth_providers": [provider(), provider()]}, "oauth_providers"),
        ({"oauth_providers": [provider(scopes=["openid email"])]}, "oauth_providers.0.scopes"),
        (
            {"oauth_providers": [provider(client_secret_chnged=True)]},
            "oauth_providers.0.client_secret_chnged",
        ),
        ({"hcaptcha": {"enabled": True, "site_key": "k"}}, "hcaptcha.secret"),
        (
            {"hcaptcha": {"enabled": True, "secret": "s", "secret_changed": True}},
            "hcaptcha.site_key",
        ),
        ({"smtp": {"port": 0}}, "smtp.port"),
        ({"smtp": {"port": 65536}}, "smtp.port"),
        ({"smtp": {"port": "many"}}, "smtp.port"),
        ({"smtp": {"from_address": "not-an-address"}}, "smtp.from_address"),
        ({"smtp": {"host": "smtp example com"}}, "smtp.host"),
        ({"smtp": {"security": "ssl3"}}, "smtp.security"),
    ],
)
async def test_invalid_updates_name_the_field_and_apply_nothing(
    client: TestClient, admin: User, db: Database, body: dict[str, Any], field: str
) -> None:
    before = await db.fetchrow("SELECT document, updated_at FROM system_settings")
    # A valid change next to the invalid one must not be applied either.
    response = await client.put(PATH, json={"join_base_url": "https://join.example.org", **body})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(field)
    assert await db.fetchrow("SELECT document, updated_at FROM system_settings") == before
    audited = "SELECT count(*) FROM audit_events WHERE resource_type = 'system_settings'"
    assert await db.fetchval(audited) == 0


@pytest.mark.parametrize("raw", ["{not json", "[]", '"text"'])
async def test_malformed_bodies_are_refused(client: TestClient, admin: User, raw: str) -> None:
    response = await client.put(PATH, data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "error" in await response.json()


async def test_an_oidc_issuer_may_use_http_only_on_loopback(
    client: TestClient, admin: User
) -> None:
    body = await put(client, {"oauth_providers": [provider(issuer="http://127.0.0.1:9000/")]})
    assert body["oauth_providers"][0]["issuer"] == "http://127.0.0.1:9000/"


async def test_an_enabled_captcha_may_rely_on_the_stored_secret(
    client: TestClient, admin: User
) -> None:
    await put(client, FULL)
    body = await put(client, {"hcaptcha": {"enabled": True}})
    assert body["hcaptcha"] == {
        "enabled": True,
        "site_key": "site-key-1",
        "secret_configured": True,
    }


async def test_updates_are_audited_naming_sections_and_secrets_without_values(
    client: TestClient, admin: User, db: Database
) -> None:
    await put(client, FULL)
    await put(client, {"smtp": {"port": 25, "password": "ignored"}})
    events = await db.fetch(
        "SELECT actor_user_id, actor_type, resource_type, action, message FROM audit_events"
        " WHERE resource_type = 'system_settings' ORDER BY occurred_at, id"
    )
    assert [(e["actor_user_id"], e["actor_type"], e["action"]) for e in events] == [
        (admin.id, "admin", "update"),
        (admin.id, "admin", "update"),
    ]
    first, second = (e["message"] for e in events)
    for section in ("public_base_url", "oauth_providers", "hcaptcha", "smtp"):
        assert section in first
    assert first.endswith(
        "; secrets changed: oauth_providers[github].client_secret (set), hcaptcha.secret (set),"
        " smtp.password (set)"
    )
    assert second == "system settings updated: smtp"
    await put(client, {"smtp": {"password_changed": True}})
    third = await db.fetchval(
        "SELECT message FROM audit_events WHERE resource_type = 'system_settings'"
        " ORDER BY occurred_at DESC, id DESC LIMIT 1"
    )
    assert third == "system settings updated: smtp; secrets changed: smtp.password (cleared)"
    text = " ".join(e["message"] for e in events)
    for secret in (OAUTH_SECRET, CAPTCHA_SECRET, SMTP_PASSWORD, "ignored"):
        assert secret not in text


async def test_a_change_applies_at_once_to_the_rest_of_the_api(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    user = await make_user()
    await put(client, {"hcaptcha": {**FULL["hcaptcha"], "enabled": True}})
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "captcha_required"
