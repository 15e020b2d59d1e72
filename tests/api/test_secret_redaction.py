"""After a full identity flow, no secret it used appears in the audit stream, the login
history, the stored settings or the logs (seed §3.10 redaction rules)."""

from __future__ import annotations

import json
import secrets

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon import logs
from kubebyon.db.database import Database
from kubebyon.domain.tokens import SESSION_COOKIE
from kubebyon.settings import Settings
from tests.api.conftest import MakeUser

SETTINGS = "/api/console/admin/system-settings"
SCANNED_TABLES = ("audit_events", "login_history", "system_settings", "sessions", "api_keys")


@pytest.fixture
def settings() -> Settings:
    return Settings(auth_rate_limit_burst=1000)


def unique(label: str) -> str:
    return f"{label}-{secrets.token_hex(8)}"


async def test_no_secret_used_in_a_full_flow_is_stored_or_logged_in_plaintext(
    client: TestClient,
    make_user: MakeUser,
    services: Services,
    db: Database,
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "debug")
    capfd.readouterr()
    used: dict[str, str] = {}

    user = await make_user(password=unique("user-password"))
    admin = await make_user(role="admin", password=unique("admin-password"))
    used |= {"user password": user.password, "admin password": admin.password}
    used["wrong password"] = unique("wrong-password")
    failed = await client.post(
        "/api/auth/login", json={"email": user.email, "password": used["wrong password"]}
    )
    assert failed.status == 401

    signed_in = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert signed_in.status == 200
    used["user session cookie"] = signed_in.cookies[SESSION_COOKIE].value
    created = await client.post("/api/console/api-keys", json={"name": "ci"})
    assert created.status == 201, await created.text()
    used["api key"] = (await created.json())["api_key"]["key"]
    for header in (f"Bearer {used['api key']}", used["api key"]):
        response = await client.get("/api/console/me", headers={"Authorization": header})
        assert response.status == 200
    assert (await client.post("/api/auth/logout")).status == 200

    admin_login = await client.post(
        "/api/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert admin_login.status == 200
    used["admin session cookie"] = admin_login.cookies[SESSION_COOKIE].value
    used |= {
        "oauth client secret": unique("oauth-secret"),
        "hcaptcha secret": unique("hcaptcha-secret"),
        "smtp password": unique("smtp-password"),
        "ignored secret": unique("ignored-secret"),
        "rejected secret": unique("rejected-secret"),
    }
    body = {
        "public_base_url": "https://console.example.com",
        "oauth_providers": [
            {
                "name": "github",
                "kind": "github",
                "client_id": "gh-client",
                "client_secret": used["oauth client secret"],
                "client_secret_changed": True,
            }
        ],
        "hcaptcha": {
            "enabled": True,
            "site_key": "site-key",
            "secret": used["hcaptcha secret"],
            "secret_changed": True,
        },
        "smtp": {
            "host": "smtp.example.com",
            "username": "mailer",
            "password": used["smtp password"],
            "password_changed": True,
            "from_address": "noreply@example.com",
        },
    }
    responses = [await client.put(SETTINGS, json=body)]
    # Sent without smtp.password_changed: ignored, and never stored or echoed either.
    responses.append(
        await client.put(SETTINGS, json={"smtp": {"password": used["ignored secret"]}})
    )
    rejected = {"smtp": {"port": 0, "password": used["rejected secret"], "password_changed": True}}
    responses.append(await client.put(SETTINGS, json=rejected))
    responses.append(await client.get(SETTINGS))
    assert [r.status for r in responses] == [200, 200, 400, 200]
    answers = " ".join([await r.text() for r in responses])

    for status in ("banned", "active"):
        response = await client.put(
            f"/api/console/admin/users/{user.id}/status", json={"status": status}
        )
        assert response.status == 200
    history = await client.get(f"/api/console/admin/users/{user.id}/login-history")
    answers += await history.text()

    stored = [
        str(row[0])
        for table in SCANNED_TABLES
        for row in await db.fetch(f"SELECT t::text FROM {table} t")
    ]
    captured = capfd.readouterr()
    log_text = captured.out + captured.err
    assert '"path": "/api/console/admin/system-settings"' in log_text  # the logs were captured
    assert any("system_settings" in row for row in stored)
    for name, secret in used.items():
        for where, text in (("database", "\n".join(stored)), ("logs", log_text)):
            assert secret not in text, f"the {name} appears in the {where}"
        if "cookie" not in name:  # cookies are answered in Set-Cookie, by design
            assert secret not in answers, f"the {name} appears in an API response"

    # Stored, not lost: the encrypted values decrypt back with the process key.
    document = json.loads(
        await db.fetchval("SELECT document::text FROM system_settings WHERE id = 1")
    )
    box = services.secrets
    provider = document["oauth_providers"][0]
    assert box.decrypt(provider["client_secret_encrypted"]) == used["oauth client secret"]
    assert box.decrypt(document["hcaptcha"]["secret_encrypted"]) == used["hcaptcha secret"]
    assert box.decrypt(document["smtp"]["password_encrypted"]) == used["smtp password"]
