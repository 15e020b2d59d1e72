"""Sign-in, sessions and the browser-security rules of the seed ("浏览器安全、CORS 与
限流"): security headers, the session cookie, CSRF origin checks, CORS, rate limits and
the client address behind trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.db.database import Database
from kubebyon.domain.system_settings import SystemSettings
from kubebyon.settings import Settings
from tests.api.conftest import MakeUser, User

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}
CONSOLE = "https://console.example.com"
EVIL = "https://evil.example"
WRITE = "/api/console/api-keys"  # a cookie-authenticated write to probe CSRF with


def own_origin(client: TestClient) -> str:
    return str(client.make_url("/")).rstrip("/")


async def set_public_base_url(services: Services, db: Database, url: str) -> None:
    async with db.transaction() as conn:
        await services.system_settings.put(conn, SystemSettings(public_base_url=url), None)


async def write(client: TestClient, **headers: str) -> Any:
    return await client.post(WRITE, json={"name": "probe"}, headers=headers)


# --- headers, cookie, credentials -------------------------------------------------


async def test_every_response_carries_the_security_headers(
    client: TestClient, signed_in: User
) -> None:
    responses = [
        await client.get("/healthz"),
        await client.get("/api/console/me"),
        await client.get("/api/nothing-here"),
        await client.post(
            "/api/auth/login", data=b"{nope", headers={"Content-Type": "application/json"}
        ),
        await client.post(WRITE, json={"name": "x"}, headers={"Origin": EVIL}),
    ]
    assert [r.status for r in responses] == [200, 200, 404, 400, 403]
    client.session.cookie_jar.clear()
    responses.append(await client.get("/api/console/me"))
    assert responses[-1].status == 401
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)


def session_cookie_header(response: Any) -> str:
    headers = [
        h for h in response.headers.getall("Set-Cookie") if h.startswith("kubebyon_session=")
    ]
    assert len(headers) == 1
    header: str = headers[0]
    return header


async def test_login_sets_an_httponly_lax_session_cookie_not_secure_over_http(
    client: TestClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status == 200
    assert (await response.json())["user"]["id"] == user.id
    attributes = {
        a.strip().split("=")[0].lower() for a in session_cookie_header(response).split(";")
    }
    assert {"httponly", "path", "max-age"} <= attributes
    assert "secure" not in attributes
    cookie = response.cookies["kubebyon_session"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert len(cookie.value) >= 40


async def test_the_session_cookie_is_secure_when_public_base_url_is_https(
    client: TestClient, make_user: MakeUser, services: Services, db: Database
) -> None:
    await set_public_base_url(services, db, CONSOLE)
    user = await make_user()
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status == 200
    attributes = [a.strip().lower() for a in session_cookie_header(response).split(";")]
    assert "secure" in attributes
    assert "httponly" in attributes


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: TestClient, make_user: MakeUser
) -> None:
    user = await make_user()
    wrong = await client.post(
        "/api/auth/login", json={"email": user.email, "password": "nope-nope-nope"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "nope-nope-nope"}
    )
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()
    assert "kubebyon_session" not in wrong.cookies
    assert (await client.get("/api/console/me")).status == 401


async def test_a_banned_user_cannot_sign_in_and_their_session_dies_at_once(
    client: TestClient, signed_in: User, db: Database
) -> None:
    assert (await client.get("/api/console/me")).status == 200
    await db.execute("UPDATE users SET status='banned' WHERE id=$1", signed_in.id)
    assert (await client.get("/api/console/me")).status == 401
    assert (await client.get("/api/auth/me")).status == 401
    response = await client.post(
        "/api/auth/login", json={"email": signed_in.email, "password": signed_in.password}
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "account_banned"
    assert "kubebyon_session" not in response.cookies


async def test_logout_revokes_the_session_server_side(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    user = await make_user()
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    token = response.cookies["kubebyon_session"].value
    logout = await client.post("/api/auth/logout")
    assert logout.status == 200
    assert logout.cookies["kubebyon_session"]["max-age"] == "0"
    # A copy of the old cookie is worthless now.
    replay = await client.get("/api/console/me", headers={"Cookie": f"kubebyon_session={token}"})
    assert replay.status == 401
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sessions WHERE user_id=$1 AND revoked_at IS NULL", user.id
        )
        == 0
    )


async def test_me_answers_with_the_signed_in_user(client: TestClient, signed_in: User) -> None:
    for path in ("/api/auth/me", "/api/console/me"):
        body = await (await client.get(path)).json()
        assert body["user"]["id"] == signed_in.id
        assert body["user"]["email"] == signed_in.email
        assert "password_hash" not in body["user"]


# --- CSRF -------------------------------------------------------------------------


async def test_cookie_writes_from_a_foreign_origin_are_refused(
    client: TestClient, signed_in: User, db: Database
) -> None:
    response = await write(client, Origin=EVIL)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf_failed"
    response = await write(client, Referer=f"{EVIL}/page")
    assert response.status == 403
    assert (await write(client, Origin="null")).status == 403
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 0
    # Reads are not writes: no check.
    assert (await client.get(WRITE, headers={"Origin": EVIL})).status == 200


async def test_sec_fetch_site_cross_site_is_refused_even_with_a_trusted_origin(
    client: TestClient, signed_in: User
) -> None:
    response = await write(client, Origin=own_origin(client), **{"Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    assert "Sec-Fetch-Site" in (await response.json())["error"]["message"]
    same_site = await write(client, Origin=own_origin(client), **{"Sec-Fetch-Site": "same-origin"})
    assert same_site.status == 201


async def test_cookie_writes_from_the_own_origin_are_allowed(
    client: TestClient, signed_in: User
) -> None:
    assert (await write(client, Origin=own_origin(client))).status == 201
    assert (await write(client, Referer=f"{own_origin(client)}/console")).status == 201
    assert (await write(client)).status == 201  # no browser headers at all: not a browser


async def test_cookie_writes_from_public_base_url_are_allowed(
    client: TestClient, signed_in: User, services: Services, db: Database
) -> None:
    assert (await write(client, Origin=CONSOLE)).status == 403
    await set_public_base_url(services, db, f"{CONSOLE}/")
    assert (await write(client, Origin=CONSOLE)).status == 201


@pytest.mark.parametrize("settings", [Settings(cors_allowed_origins=[CONSOLE])])
async def test_cookie_writes_from_a_cors_allowed_origin_are_allowed(
    client: TestClient, signed_in: User
) -> None:
    assert (await write(client, Origin=CONSOLE)).status == 201
    assert (await write(client, Origin=EVIL)).status == 403


@pytest.mark.parametrize("settings", [Settings(cors_allowed_origins=["*"])])
async def test_a_wildcard_cors_origin_is_never_trusted_for_cookies(
    client: TestClient, signed_in: User
) -> None:
    response = await write(client, Origin=EVIL)
    assert response.status == 403
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_bearer_requests_skip_the_cookie_csrf_check(
    client: TestClient, signed_in: User
) -> None:
    created = await (await write(client)).json()
    key = created["api_key"]["key"]
    # Even with the session cookie still in the jar, an Authorization header means the
    # caller is not a browser riding on ambient credentials.
    response = await write(
        client, Origin=EVIL, Authorization=f"Bearer {key}", **{"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status == 201


# --- CORS -------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [Settings(cors_allowed_origins=[CONSOLE, "*"])])
async def test_explicit_origins_get_credentials_and_the_wildcard_never_does(
    client: TestClient,
) -> None:
    explicit = await client.get("/healthz", headers={"Origin": CONSOLE})
    assert explicit.headers["Access-Control-Allow-Origin"] == CONSOLE
    assert explicit.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in explicit.headers["Vary"]
    other = await client.get("/healthz", headers={"Origin": EVIL})
    assert other.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in other.headers
    # Errors carry CORS headers too, so the console can read them.
    denied = await client.get("/api/console/me", headers={"Origin": CONSOLE})
    assert denied.status == 401
    assert denied.headers["Access-Control-Allow-Origin"] == CONSOLE


@pytest.mark.parametrize("settings", [Settings(cors_allowed_origins=[CONSOLE])])
async def test_preflight_is_answered_for_allowed_origins_only(client: TestClient) -> None:
    preflight = await client.options(
        WRITE,
        headers={
            "Origin": CONSOLE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == CONSOLE
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    refused = await client.options(
        WRITE, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    plain = await client.get("/healthz", headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in plain.headers


# --- rate limits and the client address -------------------------------------------


async def bad_logins(client: TestClient, count: int, **headers: str) -> list[Any]:
    return [
        await client.post(
            "/api/auth/login",
            json={"email": "someone@example.com", "password": "wrong-password"},
            headers=headers,
        )
        for _ in range(count)
    ]


async def test_login_is_limited_to_five_tries_per_30_seconds_per_client(
    client: TestClient, make_user: MakeUser
) -> None:
    responses = await bad_logins(client, 6)
    assert [r.status for r in responses] == [401] * 5 + [429]
    limited = responses[-1]
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert (await limited.json())["error"]["code"] == "rate_limited"
    # Even the right password waits: the limit is on the client, not the account.
    user = await make_user()
    right = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert right.status == 429


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    client: TestClient, db: Database
) -> None:
    responses = [
        (await bad_logins(client, 1, **{"X-Forwarded-For": f"203.0.113.{n}"}))[0] for n in range(6)
    ]
    assert [r.status for r in responses] == [401] * 5 + [429]
    ips = {row["ip"] for row in await db.fetch("SELECT ip FROM login_history")}
    assert ips == {"127.0.0.1"}


@pytest.mark.parametrize("settings", [Settings(trusted_proxy_cidrs=["127.0.0.0/8"])])
async def test_forwarded_for_names_the_client_behind_a_trusted_proxy(
    client: TestClient, db: Database
) -> None:
    first = await bad_logins(client, 6, **{"X-Forwarded-For": "203.0.113.7"})
    assert [r.status for r in first] == [401] * 5 + [429]
    # Another client behind the same proxy has its own budget; a forged left-most entry
    # does not change who the proxy says is calling.
    other = await bad_logins(client, 1, **{"X-Forwarded-For": "203.0.113.7, 198.51.100.9"})
    assert other[0].status == 401
    forged = await bad_logins(client, 1, **{"X-Forwarded-For": "198.51.100.200, 203.0.113.7"})
    assert forged[0].status == 429
    ips = {row["ip"] for row in await db.fetch("SELECT ip FROM login_history")}
    assert ips == {"203.0.113.7", "198.51.100.9"}


# --- bodies -----------------------------------------------------------------------


async def test_a_body_over_one_mib_is_413_in_the_error_envelope(client: TestClient) -> None:
    big = b'{"email": "a@example.com", "password": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post(
        "/api/auth/login", data=big, headers={"Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'{"email": "a@example.com"}', "validation_error"),
        (b'{"email": "a@example.com", "password": 5}', "validation_error"),
    ],
)
async def test_malformed_login_bodies_are_400_in_the_error_envelope(
    client: TestClient, body: bytes, code: str
) -> None:
    response = await client.post(
        "/api/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["message"]


async def test_login_is_recorded_in_history_and_audit_without_the_password(
    client: TestClient, signed_in: User, db: Database
) -> None:
    await bad_logins(client, 1)
    history = await db.fetch("SELECT * FROM login_history ORDER BY at, id")
    assert [(row["result"], row["method"]) for row in history] == [
        ("success", "password"),
        ("bad_credentials", "password"),
    ]
    events = await db.fetch("SELECT * FROM audit_events WHERE resource_type='session'")
    assert {(e["action"], e["result"]) for e in events} == {
        ("login", "success"),
        ("login", "failure"),
    }
    for event in events:
        assert signed_in.password not in str(dict(event))
        assert "wrong-password" not in str(dict(event))
