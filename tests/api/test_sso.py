"""OAuth2/OIDC single sign-on, end to end: the real app and the real OAuth adapter
against a local fake identity provider (tests/fakes/oidc.py), on real PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import structlog
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from yarl import URL

from api.routes.sso import STATE_COOKIE
from api.state import Services
from kubebyon.adapters.oauth import OAuthAdapter
from kubebyon.db.database import Database
from kubebyon.domain.system_settings import HCaptchaConfig, OAuthProviderConfig, SystemSettings
from tests.api.conftest import MakeUser
from tests.fakes.oidc import FakeAccount, FakeIdentityProvider


@pytest.fixture
async def idp() -> AsyncIterator[FakeIdentityProvider]:
    async with FakeIdentityProvider() as provider:
        yield provider


@pytest.fixture
async def oauth(services: Services) -> AsyncIterator[OAuthAdapter]:
    adapter = OAuthAdapter()
    services.oauth = adapter  # as kubebyon.daemon wires it
    yield adapter
    await adapter.close()


async def configure(services: Services, *providers: OAuthProviderConfig, **extra: Any) -> None:
    """What an admin saves in the system settings (secrets encrypted)."""
    settings = SystemSettings(oauth_providers=list(providers), **extra)
    async with services.db.transaction() as conn:
        await services.system_settings.put(conn, settings, None)


def oidc(
    idp: FakeIdentityProvider, services: Services, name: str = "corp", **extra: Any
) -> OAuthProviderConfig:
    values: dict[str, Any] = {
        "name": name,
        "kind": "oidc",
        "display_name": "Corp SSO",
        "client_id": idp.client_id,
        "client_secret_encrypted": services.secrets.encrypt(idp.client_secret),
        "issuer": idp.issuer,
    }
    return OAuthProviderConfig.model_validate(values | extra)


def github(idp: FakeIdentityProvider, services: Services) -> OAuthProviderConfig:
    return OAuthProviderConfig(
        name="github",
        kind="github",
        client_id=idp.client_id,
        client_secret_encrypted=services.secrets.encrypt(idp.client_secret),
        authorize_url=idp.url("/login/oauth/authorize"),
        token_url=idp.url("/login/oauth/access_token"),
        api_base_url=idp.issuer,
    )


@pytest.fixture
async def corp(
    idp: FakeIdentityProvider, services: Services, oauth: OAuthAdapter
) -> OAuthProviderConfig:
    provider = oidc(idp, services)
    await configure(services, provider)
    return provider


async def callback_url(client: TestClient, provider: str = "corp", **params: str) -> str:
    """Start signing in and pass the provider's consent page; the URL the provider sends
    the browser back to (not yet followed)."""
    login = await client.get(
        f"/api/auth/sso/{provider}/login", params=params, allow_redirects=False
    )
    assert login.status == 302, await login.text()
    at_provider = await client.session.get(login.headers["Location"], allow_redirects=False)
    assert at_provider.status == 302, await at_provider.text()
    return at_provider.headers["Location"]


async def sign_in(client: TestClient, provider: str = "corp", **params: str) -> ClientResponse:
    return await client.session.get(
        await callback_url(client, provider, **params), allow_redirects=False
    )


async def me(client: TestClient) -> dict[str, Any] | None:
    response = await client.get("/api/auth/me")
    if response.status == 401:
        return None
    assert response.status == 200, await response.text()
    user: dict[str, Any] = (await response.json())["user"]
    return user


async def error_of(response: ClientResponse) -> tuple[int, str]:
    body = await response.json()
    return response.status, body["error"]["code"]


@pytest.mark.parametrize("kind", ["oidc", "google"])
async def test_browser_flow_creates_user_with_groups_and_session(
    client: TestClient,
    idp: FakeIdentityProvider,
    services: Services,
    oauth: OAuthAdapter,
    db: Database,
    kind: str,
) -> None:
    await configure(services, oidc(idp, services, kind=kind))
    idp.account = FakeAccount("sub-ada", "Ada@Example.COM", groups=["platform", "ops"])

    # The browser follows every redirect: login -> provider -> callback -> console.
    final = await client.get("/api/auth/sso/corp/login")
    assert [r.status for r in final.history] == [302, 302, 302]
    assert final.url.path == "/"
    user = await me(client)
    assert user is not None
    assert user["email"] == "Ada@example.com"
    assert user["role"] == "user"
    assert user["email_verified_at"] is not None
    assert user["display_name"] == "Ada Lovelace"

    session = await db.fetchrow("SELECT auth_method, groups FROM sessions")
    assert session is not None
    assert session["auth_method"] == "oauth:corp"
    assert session["groups"] == ["platform", "ops"]
    assert (
        await db.fetchval(
            "SELECT user_id FROM user_identities WHERE provider = 'corp' AND subject = 'sub-ada'"
        )
        == user["id"]
    )
    events = await db.fetch(
        "SELECT resource_type, action, actor_method, actor_user_id, result FROM audit_events"
        " ORDER BY occurred_at, id"
    )
    assert [tuple(e) for e in events] == [
        ("user", "register", "oauth", user["id"], "success"),
        ("session", "login", "oauth", user["id"], "success"),
    ]
    history = await db.fetchrow("SELECT method, result, user_id FROM login_history")
    assert history is not None
    assert tuple(history) == ("oauth:corp", "success", user["id"])


async def test_login_keeps_state_hashed_and_verifier_encrypted(
    client: TestClient, corp: OAuthProviderConfig, services: Services, db: Database
) -> None:
    login = await client.get("/api/auth/sso/corp/login", allow_redirects=False)
    assert login.status == 302
    to_provider = URL(login.headers["Location"])
    assert to_provider.path == "/authorize"
    params = to_provider.query
    assert params["code_challenge_method"] == "S256"
    assert params["redirect_uri"] == str(client.make_url("/api/auth/sso/corp/callback"))
    row = await db.fetchrow("SELECT * FROM oauth_states")
    assert row is not None
    assert row["state_hash"] == hashlib.sha256(params["state"].encode()).digest()
    assert row["nonce"] == params["nonce"]
    verifier = services.secrets.decrypt(row["code_verifier"])
    assert row["code_verifier"] != verifier
    assert create_s256_code_challenge(verifier) == params["code_challenge"]
    assert row["expires_at"] - row["created_at"] == timedelta(minutes=10)


async def test_redirect_uri_follows_public_base_url(
    client: TestClient, idp: FakeIdentityProvider, services: Services, oauth: OAuthAdapter
) -> None:
    await configure(services, oidc(idp, services), public_base_url="https://console.example.com")
    login = await client.get("/api/auth/sso/corp/login", allow_redirects=False)
    assert URL(login.headers["Location"]).query["redirect_uri"] == (
        "https://console.example.com/api/auth/sso/corp/callback"
    )


async def test_existing_account_is_linked_by_verified_email_then_by_subject(
    client: TestClient,
    corp: OAuthProviderConfig,
    idp: FakeIdentityProvider,
    make_user: MakeUser,
    db: Database,
) -> None:
    existing = await make_user("grace@example.com")
    idp.account = FakeAccount("sub-grace", "grace@example.com")
    response = await sign_in(client)
    assert response.status == 302, await response.text()
    user = await me(client)
    assert user is not None and user["id"] == existing.id
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_events"
            " WHERE action = 'link_identity' AND actor_user_id = $1",
            existing.id,
        )
        == 1
    )

    # Later the provider reports another address: the linked identity still decides.
    client.session.cookie_jar.clear()
    idp.account = FakeAccount("sub-grace", "grace@elsewhere.example")
    assert (await sign_in(client)).status == 302
    user = await me(client)
    assert user is not None and user["id"] == existing.id
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_unverified_email_does_not_take_over_an_existing_account(
    client: TestClient,
    corp: OAuthProviderConfig,
    idp: FakeIdentityProvider,
    make_user: MakeUser,
    db: Database,
) -> None:
    victim = await make_user("victim@example.com")
    idp.account = FakeAccount("sub-attacker", "victim@example.com", email_verified=False)
    response = await sign_in(client)
    assert await error_of(response) == (400, "email_not_verified")
    assert await me(client) is None
    assert await db.fetchval("SELECT count(*) FROM user_identities") == 0
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", victim.id) == 0
    assert await db.fetchval("SELECT count(*) FROM users") == 1
    failure = await db.fetchrow("SELECT result, message FROM audit_events WHERE action = 'login'")
    assert failure is not None and failure["result"] == "failure"


async def test_banned_account_cannot_sign_in(
    client: TestClient,
    corp: OAuthProviderConfig,
    idp: FakeIdentityProvider,
    make_user: MakeUser,
    db: Database,
) -> None:
    await make_user("banned@example.com", status="banned")
    idp.account = FakeAccount("sub-banned", "banned@example.com")
    assert await error_of(await sign_in(client)) == (403, "account_banned")
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0
    assert await db.fetchval("SELECT count(*) FROM user_identities") == 0


async def test_replayed_state_is_rejected(
    client: TestClient, corp: OAuthProviderConfig, db: Database
) -> None:
    url = await callback_url(client)
    first = await client.session.get(url, allow_redirects=False)
    assert first.status == 302
    # Even from the same browser, with the state cookie put back, the state is spent.
    state = URL(url).query["state"]
    client.session.cookie_jar.update_cookies(
        {STATE_COOKIE: state}, response_url=client.make_url("/api/auth/sso/")
    )
    replay = await client.session.get(url, allow_redirects=False)
    assert await error_of(replay) == (400, "invalid_state")
    assert await db.fetchval("SELECT count(*) FROM sessions") == 1


async def test_forged_state_is_rejected(
    client: TestClient, corp: OAuthProviderConfig, db: Database
) -> None:
    url = URL(await callback_url(client))
    forged = "forged-" + "x" * 40
    client.session.cookie_jar.update_cookies(
        {STATE_COOKIE: forged}, response_url=client.make_url("/api/auth/sso/")
    )
    response = await client.session.get(url.update_query(state=forged), allow_redirects=False)
    assert await error_of(response) == (400, "invalid_state")
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_callback_in_another_browser_is_rejected(
    client: TestClient, corp: OAuthProviderConfig, db: Database
) -> None:
    """Login CSRF: a callback URL captured by an attacker cannot sign a victim in."""
    url = await callback_url(client)
    client.session.cookie_jar.clear()
    response = await client.session.get(url, allow_redirects=False)
    assert await error_of(response) == (400, "invalid_state")
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_expired_state_is_rejected(
    client: TestClient, corp: OAuthProviderConfig, db: Database
) -> None:
    url = await callback_url(client)
    await db.execute("UPDATE oauth_states SET expires_at = now() - interval '1 second'")
    response = await client.session.get(url, allow_redirects=False)
    assert await error_of(response) == (400, "invalid_state")


async def test_state_of_another_provider_is_rejected(
    client: TestClient, idp: FakeIdentityProvider, services: Services, oauth: OAuthAdapter
) -> None:
    await configure(services, oidc(idp, services), oidc(idp, services, name="other"))
    url = URL(await callback_url(client, "corp"))
    response = await client.session.get(
        url.with_path("/api/auth/sso/other/callback"), allow_redirects=False
    )
    assert await error_of(response) == (400, "invalid_state")


@pytest.mark.parametrize(
    "misbehaviour", ["bad_signature", "wrong_nonce", "wrong_audience", "wrong_issuer", "expired"]
)
async def test_untrustworthy_id_token_is_rejected(
    client: TestClient,
    corp: OAuthProviderConfig,
    idp: FakeIdentityProvider,
    db: Database,
    misbehaviour: str,
) -> None:
    idp.misbehave = misbehaviour
    assert await error_of(await sign_in(client)) == (400, "sso_rejected")
    assert await me(client) is None
    assert await db.fetchval("SELECT count(*) FROM users") == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'login' AND result = 'failure'"
        )
        == 1
    )


async def test_declined_consent_is_a_400(
    client: TestClient, corp: OAuthProviderConfig, idp: FakeIdentityProvider
) -> None:
    idp.deny = True
    assert await error_of(await sign_in(client)) == (400, "sso_denied")


@pytest.mark.parametrize(
    ("next_path", "landing"),
    [
        ("/clusters/cl_1?tab=nodes", "/clusters/cl_1?tab=nodes"),
        ("//evil.example/phish", "/"),
        ("https://evil.example/phish", "/"),
        ("/\\evil.example", "/"),
    ],
)
async def test_lands_on_a_same_origin_next_path_only(
    client: TestClient, corp: OAuthProviderConfig, next_path: str, landing: str
) -> None:
    response = await sign_in(client, next=next_path)
    assert response.status == 302
    assert response.headers["Location"] == landing


async def test_unknown_or_disabled_provider_is_404(
    client: TestClient, idp: FakeIdentityProvider, services: Services, oauth: OAuthAdapter
) -> None:
    await configure(services, oidc(idp, services, name="off", enabled=False))
    for path in (
        "/api/auth/sso/nope/login",
        "/api/auth/sso/off/login",
        "/api/auth/sso/off/callback?code=x&state=y",
    ):
        response = await client.get(path, allow_redirects=False)
        assert await error_of(response) == (404, "provider_not_found"), path


async def test_provider_without_secret_or_unreachable(
    client: TestClient, idp: FakeIdentityProvider, services: Services, oauth: OAuthAdapter
) -> None:
    await configure(
        services,
        oidc(idp, services, name="nosecret", client_secret_encrypted=None),
        oidc(idp, services, name="down", issuer="http://127.0.0.1:9"),
    )
    response = await client.get("/api/auth/sso/nosecret/login", allow_redirects=False)
    assert await error_of(response) == (503, "sso_unavailable")
    response = await client.get("/api/auth/sso/down/login", allow_redirects=False)
    assert await error_of(response) == (502, "sso_unavailable")


async def test_github_flow(
    client: TestClient,
    idp: FakeIdentityProvider,
    services: Services,
    oauth: OAuthAdapter,
    db: Database,
) -> None:
    await configure(services, github(idp, services))
    idp.account = FakeAccount("4242", "octo@example.com", name="", login="octocat")
    response = await sign_in(client, "github")
    assert response.status == 302, await response.text()
    user = await me(client)
    assert user is not None
    assert user["email"] == "octo@example.com"
    assert user["display_name"] == "octocat"
    assert (
        await db.fetchval(
            "SELECT user_id FROM user_identities WHERE provider = 'github' AND subject = '4242'"
        )
        == user["id"]
    )

    # An unverified primary address is not enough for a new sign-in either.
    client.session.cookie_jar.clear()
    idp.account = FakeAccount("4343", "new@example.com", email_verified=False)
    assert await error_of(await sign_in(client, "github")) == (400, "email_not_verified")


async def test_providers_lists_enabled_providers_and_public_captcha_only(
    client: TestClient, idp: FakeIdentityProvider, services: Services
) -> None:
    await configure(
        services,
        oidc(idp, services),
        github(idp, services).model_copy(update={"enabled": False}),
        oidc(idp, services, name="google", kind="google", display_name=""),
        hcaptcha=HCaptchaConfig(
            enabled=True, site_key="site-key-1", secret_encrypted=services.secrets.encrypt("hc-sec")
        ),
    )
    response = await client.get("/api/auth/providers")
    assert response.status == 200
    assert await response.json() == {
        "providers": [
            {"name": "corp", "display_name": "Corp SSO", "kind": "oidc"},
            {"name": "google", "display_name": "Google", "kind": "google"},
        ],
        "hcaptcha": {"enabled": True, "site_key": "site-key-1"},
    }
    text = await response.text()
    for secret in (idp.client_id, idp.client_secret, "hc-sec", idp.issuer):
        assert secret not in text


async def test_no_subject_code_or_token_reaches_audit_or_logs(
    client: TestClient,
    corp: OAuthProviderConfig,
    idp: FakeIdentityProvider,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    idp.account = FakeAccount("sub-secret-7f3a9c", "lin@example.com", groups=["ops"])
    with structlog.testing.capture_logs() as structured:
        url = await callback_url(client)
        assert (await client.session.get(url, allow_redirects=False)).status == 302
        client.session.cookie_jar.clear()
        idp.misbehave = "wrong_nonce"  # the failure path logs and audits too
        assert (await sign_in(client)).status == 400
    state = URL(url).query["state"]
    secrets = [idp.account.subject, idp.client_secret, state, *idp.issued, *idp.verifiers]
    assert len(idp.issued) == 6  # two codes, access tokens, ID tokens

    stored = " ".join(
        [
            str(dict(row))
            for table in ("audit_events", "login_history")
            for row in await db.fetch(f"SELECT * FROM {table}")
        ]
    )
    # The production runner has no access log (kubebyon.daemon: access_log=None); the
    # test server's access log lines carry query strings, so they are left out here.
    logged = " ".join(
        [str(entry) for entry in structured]
        + [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]
    )
    assert structured, "expected the sign-in to log something"
    for secret in secrets:
        assert secret not in stored
        assert secret not in logged
