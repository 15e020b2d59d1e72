"""Registration and password reset by e-mail code, on real PostgreSQL.

Mail really goes out: the notifications reconciler runs on the real Runtime and
delivers to a local aiosmtpd server, and codes are read from the received messages.
hCaptcha is checked by the real adapter against a local siteverify fake.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import Services
from kubebyon.adapters.hcaptcha import HCaptchaVerifier
from kubebyon.db.database import Database
from kubebyon.domain.system_settings import HCaptchaConfig
from kubebyon.domain.tokens import SESSION_COOKIE
from kubebyon.runtime.driver import Runtime
from kubebyon.settings import Settings
from reconcilers.notifications import NotificationsReconciler
from tests.api.conftest import PASSWORD, MakeUser, User, login
from tests.fakes.hcaptcha import FakeHCaptcha
from tests.fakes.smtp import FakeSmtpServer
from tests.support import wait_until

CAPTCHA_SECRET = "0x-captcha-secret-for-tests"
GOOD_TOKEN = "token-the-fake-accepts"
NEW_PASSWORD = "a-brand-new-passphrase"
SEND = "/api/auth/register/send-code"
REGISTER = "/api/auth/register"
RESET_SEND = "/api/auth/reset-password/send-code"
RESET = "/api/auth/reset-password"


@pytest.fixture
async def hcaptcha() -> AsyncIterator[FakeHCaptcha]:
    async with FakeHCaptcha(secret=CAPTCHA_SECRET, accept={GOOD_TOKEN}) as fake:
        yield fake


@pytest.fixture
def settings(hcaptcha: FakeHCaptcha) -> Settings:
    # A generous burst: these tests call the same endpoint many times from one IP.
    # The rate-limit test parametrizes ``settings`` back to the seed defaults.
    return Settings(hcaptcha_verify_url=hcaptcha.verify_url, auth_rate_limit_burst=1000)


@pytest.fixture
async def captcha(services: Services) -> AsyncIterator[HCaptchaVerifier]:
    """The production wiring (kubebyon/daemon.py passes it to build_services)."""
    verifier = HCaptchaVerifier()
    services.captcha = verifier
    yield verifier
    await verifier.close()


async def _update_settings(services: Services, **changes: Any) -> None:
    current = await services.system_settings.get()
    async with services.db.transaction() as conn:
        await services.system_settings.put(conn, current.model_copy(update=changes), None)


@pytest.fixture
async def mail(services: Services, db: Database) -> AsyncIterator[FakeSmtpServer]:
    """An SMTP server configured in system settings, and the notifications reconciler
    running on the real Runtime."""
    server = FakeSmtpServer()
    await server.start()
    await _update_settings(services, smtp=server.config(services.secrets))
    runtime = Runtime(
        db,
        [NotificationsReconciler(services.secrets)],
        lease_seconds=5.0,
        idle_poll_seconds=1.0,
        backoff_base=0.05,
        backoff_cap=0.5,
        rng=random.Random(4),
    )
    await runtime.start()
    try:
        yield server
    finally:
        await runtime.stop(grace=5.0)
        await server.stop()


async def _post(client: TestClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, json=body)
    return response.status, await response.json()


async def _code(client: TestClient, mail: FakeSmtpServer, path: str, email: str) -> str:
    """Ask for a code and read it from the mail that arrives (one more than before)."""
    before = len(mail.mail_to(email))
    status, body = await _post(client, path, {"email": email})
    assert status == 200, body
    return mail.code_in(await mail.wait_for_mail(email, before + 1))


async def _register(
    client: TestClient, email: str, code: str, password: str = NEW_PASSWORD, **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {"email": email, "password": password, "email_verification_code": code, **extra}
    return await _post(client, REGISTER, body)


async def _all_sent(db: Database) -> list[Any] | None:
    rows = await db.fetch("SELECT * FROM outbox")
    return rows if rows and all(row["status"] == "sent" for row in rows) else None


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def _assert_no_secrets(db: Database, secrets: list[str], *, logs: str) -> None:
    outbox = await wait_until(
        lambda: _all_sent(db), what="every outbox row sent (a mail arrives just before)"
    )
    assert all(row["body"] is None for row in outbox), "bodies cleared after sending"
    events = await db.fetch("SELECT * FROM audit_events")
    dumped = repr([dict(r) for r in events]) + repr([dict(r) for r in outbox]) + logs
    for secret in secrets:
        assert secret not in dumped


async def test_register_flow_signs_in_and_codes_are_single_use(
    client: TestClient,
    mail: FakeSmtpServer,
    db: Database,
    services: Services,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    email = "Ann@Example.COM"
    status, body = await _post(client, SEND, {"email": email})
    assert (status, body) == (200, {"ok": True, "expires_in_seconds": 600})
    message = await mail.wait_for_mail("Ann@example.com")
    assert message["Subject"] == "Your KubeBYON verification code"
    assert "noreply@kubebyon.test" in message["From"]
    code = mail.code_in(message)
    stored = await db.fetchrow("SELECT code_hash FROM email_codes")
    assert stored is not None and code.encode() not in stored["code_hash"]

    status, body = await _register(client, "ann@example.com", code, display_name=" Ann ")
    assert status == 200, body
    user = body["user"]
    assert user["email"] == "ann@example.com"  # as typed when registering
    assert (user["role"], user["status"], user["display_name"]) == ("user", "active", "Ann")
    assert user["email_verified_at"] is not None
    assert client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE]
    me = await client.get("/api/auth/me")
    assert me.status == 200 and (await me.json())["user"]["id"] == user["id"]

    event = await db.fetchrow(
        "SELECT * FROM audit_events WHERE resource_type = 'user' AND action = 'register'"
    )
    assert event is not None and event["actor_user_id"] == user["id"]
    assert event["resource_id"] == user["id"] and event["result"] == "success"

    # Used once: the same code does not work a second time.
    status, body = await _register(client, "ann@example.com", code)
    assert (status, body["error"]["code"]) == (400, "invalid_verification_code")

    await client.post("/api/auth/logout")
    await login(client, User(user["id"], "Ann@example.com", NEW_PASSWORD, "user"))

    out, err = capfd.readouterr()
    await _assert_no_secrets(db, [code, NEW_PASSWORD], logs=out + err + caplog.text)


async def test_short_password_is_refused_before_the_code_is_spent(
    client: TestClient, mail: FakeSmtpServer
) -> None:
    code = await _code(client, mail, SEND, "bo@example.com")
    status, body = await _register(client, "bo@example.com", code, password="short")
    assert status == 400
    assert body["error"]["code"] == "weak_password"
    assert "at least 10 characters" in body["error"]["message"]
    status, body = await _register(client, "bo@example.com", code)
    assert status == 200, body


async def test_five_wrong_codes_kill_the_code(
    client: TestClient, mail: FakeSmtpServer, db: Database
) -> None:
    code = await _code(client, mail, SEND, "cy@example.com")
    for _ in range(5):
        status, body = await _register(client, "cy@example.com", _wrong(code))
        assert (status, body["error"]["code"]) == (400, "invalid_verification_code")
    status, body = await _register(client, "cy@example.com", code)
    assert (status, body["error"]["code"]) == (400, "invalid_verification_code")
    assert await db.fetchval("SELECT attempts FROM email_codes") == 5
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_four_wrong_codes_still_leave_the_right_one_working(
    client: TestClient, mail: FakeSmtpServer
) -> None:
    code = await _code(client, mail, SEND, "di@example.com")
    for _ in range(4):
        assert (await _register(client, "di@example.com", _wrong(code)))[0] == 400
    assert (await _register(client, "di@example.com", code))[0] == 200


async def test_expired_code_is_refused(
    client: TestClient, mail: FakeSmtpServer, db: Database
) -> None:
    code = await _code(client, mail, SEND, "ed@example.com")
    await db.execute("UPDATE email_codes SET expires_at = now() - interval '1 second'")
    status, body = await _register(client, "ed@example.com", code)
    assert (status, body["error"]["code"]) == (400, "invalid_verification_code")


async def test_a_new_code_supersedes_the_previous_one(
    client: TestClient, mail: FakeSmtpServer
) -> None:
    first = await _code(client, mail, SEND, "fay@example.com")
    second = await _code(client, mail, SEND, "fay@example.com")
    assert first != second  # 1 in a million: a rerun settles it
    assert (await _register(client, "fay@example.com", first))[0] == 400
    assert (await _register(client, "fay@example.com", second))[0] == 200


async def test_send_code_for_an_existing_account_answers_the_same_but_mails_no_code(
    client: TestClient, mail: FakeSmtpServer, make_user: MakeUser, db: Database
) -> None:
    user = await make_user("gus@example.com")
    new = await _post(client, SEND, {"email": "new@example.com"})
    existing = await _post(client, SEND, {"email": user.email})
    assert new == existing == (200, {"ok": True, "expires_in_seconds": 600})
    notice = await mail.wait_for_mail(user.email)
    assert notice["Subject"] == "You already have a KubeBYON account"
    assert "Forgot password" in mail.text(notice)
    assert await db.fetchval("SELECT count(*) FROM email_codes WHERE email = $1", user.email) == 0


async def test_registering_an_address_taken_meanwhile_is_a_conflict(
    client: TestClient, mail: FakeSmtpServer, make_user: MakeUser
) -> None:
    code = await _code(client, mail, SEND, "hal@example.com")
    await make_user("HAL@example.com")  # e.g. signed up through SSO in between
    status, body = await _register(client, "hal@example.com", code)
    assert (status, body["error"]["code"]) == (409, "email_taken")


async def test_codes_work_only_for_their_purpose(
    client: TestClient, mail: FakeSmtpServer, make_user: MakeUser
) -> None:
    user = await make_user("ivy@example.com")
    reset_code = await _code(client, mail, RESET_SEND, user.email)
    # Were purposes mixed up, the code would match and the answer be 409 (address taken).
    status, body = await _register(client, user.email, reset_code)
    assert (status, body["error"]["code"]) == (400, "invalid_verification_code")


async def test_reset_sets_the_password_and_signs_out_every_session(
    client: TestClient,
    mail: FakeSmtpServer,
    make_user: MakeUser,
    db: Database,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = await make_user("jo@example.com")
    await login(client, user)
    old_cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE]
    code = await _code(client, mail, RESET_SEND, user.email)
    assert (await mail.wait_for_mail(user.email))["Subject"] == "Your KubeBYON password reset code"

    wrong = {"email": user.email, "email_verification_code": _wrong(code)}
    status, body = await _post(client, RESET, {**wrong, "new_password": NEW_PASSWORD})
    assert (status, body["error"]["code"]) == (400, "invalid_verification_code")
    assert (await client.get("/api/auth/me")).status == 200  # nothing changed yet

    body = {"email": user.email, "email_verification_code": code, "new_password": NEW_PASSWORD}
    assert await _post(client, RESET, body) == (200, {"ok": True})
    # The old session cookie is dead, even though the browser still sends it.
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: old_cookie.value})
    assert (await client.get("/api/auth/me")).status == 401
    old = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert old.status == 401
    await login(client, User(user.id, user.email, NEW_PASSWORD, "user"))
    status, answer = await _post(client, RESET, body)  # used once
    assert (status, answer["error"]["code"]) == (400, "invalid_verification_code")

    event = await db.fetchrow("SELECT * FROM audit_events WHERE action = 'reset_password'")
    assert event is not None and event["resource_id"] == user.id
    out, err = capfd.readouterr()
    await _assert_no_secrets(db, [code, NEW_PASSWORD, PASSWORD], logs=out + err + caplog.text)


async def test_reset_send_code_for_an_unknown_address_answers_the_same_and_sends_nothing(
    client: TestClient, make_user: MakeUser, db: Database
) -> None:
    user = await make_user("kim@example.com")
    known = await _post(client, RESET_SEND, {"email": user.email})
    unknown = await _post(client, RESET_SEND, {"email": "nobody@example.com"})
    assert known == unknown == (200, {"ok": True, "expires_in_seconds": 600})
    assert await db.fetchval("SELECT array_agg(recipient) FROM outbox") == [user.email]


async def test_banned_user_may_reset_but_still_cannot_sign_in(
    client: TestClient, mail: FakeSmtpServer, make_user: MakeUser
) -> None:
    user = await make_user("lee@example.com", status="banned")
    code = await _code(client, mail, RESET_SEND, user.email)
    body = {"email": user.email, "email_verification_code": code, "new_password": NEW_PASSWORD}
    assert (await _post(client, RESET, body))[0] == 200
    response = await client.post(
        "/api/auth/login", json={"email": user.email, "password": NEW_PASSWORD}
    )
    assert response.status == 403


async def test_admin_sends_a_reset_code(
    client: TestClient, mail: FakeSmtpServer, admin: User, make_user: MakeUser, db: Database
) -> None:
    user = await make_user("max@example.com")
    response = await client.post(f"/api/console/admin/users/{user.id}/reset-password")
    assert response.status == 200, await response.text()
    code = mail.code_in(await mail.wait_for_mail(user.email))
    event = await db.fetchrow("SELECT * FROM audit_events WHERE action = 'reset_password'")
    assert event is not None
    assert (event["actor_user_id"], event["actor_type"]) == (admin.id, "admin")
    assert (event["resource_type"], event["resource_id"]) == ("user", user.id)
    assert code not in event["message"]

    body = {"email": user.email, "email_verification_code": code, "new_password": NEW_PASSWORD}
    assert (await _post(client, RESET, body))[0] == 200

    missing = await client.post("/api/console/admin/users/usr_nobody/reset-password")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    await login(client, User(user.id, user.email, NEW_PASSWORD, "user"))
    forbidden = await client.post(f"/api/console/admin/users/{admin.id}/reset-password")
    assert forbidden.status == 403


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        (SEND, {"email": "x@example.com"}),
        (
            REGISTER,
            {
                "email": "x@example.com",
                "password": NEW_PASSWORD,
                "email_verification_code": "123456",
            },
        ),
        (RESET_SEND, {"email": "x@example.com"}),
        (
            RESET,
            {
                "email": "x@example.com",
                "new_password": NEW_PASSWORD,
                "email_verification_code": "123456",
            },
        ),
    ],
)
async def test_bad_input_is_a_400_in_the_console_envelope(
    client: TestClient, db: Database, path: str, valid: dict[str, str]
) -> None:
    malformed = await client.post(
        path, data=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400
    assert (await malformed.json())["error"]["code"] == "invalid_json"
    for field in valid:
        partial = {k: v for k, v in valid.items() if k != field}
        status, body = await _post(client, path, partial)
        assert (status, body["error"]["code"]) == (400, "validation_error"), field
        assert body["error"]["message"].startswith(field)
    status, body = await _post(client, path, {**valid, "email": 42})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    status, body = await _post(client, path, {**valid, "email": "not an address"})
    assert (status, body["error"]["code"]) == (400, "invalid_email")
    status, body = await _post(client, path, {**valid, "unexpected": True})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize("settings", [Settings()])  # the seed's 5 per 30 s
async def test_auth_endpoints_are_rate_limited_per_endpoint(client: TestClient) -> None:
    for _ in range(5):
        assert (await _post(client, SEND, {"email": "rl@example.com"}))[0] == 200
    limited = await client.post(SEND, json={"email": "rl@example.com"})
    assert limited.status == 429
    assert (await limited.json())["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    # Another endpoint has its own budget.
    assert (await _post(client, RESET_SEND, {"email": "rl@example.com"}))[0] == 200
    for _ in range(5):
        await _post(client, REGISTER, {"email": "rl@example.com"})
    assert (await client.post(REGISTER, json={})).status == 429


async def test_captcha_when_enabled(
    client: TestClient,
    services: Services,
    captcha: HCaptchaVerifier,
    hcaptcha: FakeHCaptcha,
    mail: FakeSmtpServer,
    make_user: MakeUser,
) -> None:
    await _update_settings(
        services,
        hcaptcha=HCaptchaConfig(
            enabled=True,
            site_key="site-key",
            secret_encrypted=services.secrets.encrypt(CAPTCHA_SECRET),
        ),
    )
    user = await make_user()
    login_body = {"email": user.email, "password": user.password}
    for path, body in [
        (SEND, {"email": "cap@example.com"}),
        ("/api/auth/login", login_body),
        (
            REGISTER,
            {
                "email": "cap@example.com",
                "password": NEW_PASSWORD,
                "email_verification_code": "000000",
            },
        ),
    ]:
        status, answer = await _post(client, path, body)
        assert (status, answer["error"]["code"]) == (400, "captcha_required"), path
        status, answer = await _post(client, path, {**body, "captcha_token": "forged"})
        assert (status, answer["error"]["code"]) == (400, "captcha_failed"), path
    signed_in = await _post(client, "/api/auth/login", {**login_body, "captcha_token": GOOD_TOKEN})
    assert signed_in[0] == 200
    assert hcaptcha.requests[-1] == {
        "secret": CAPTCHA_SECRET,
        "response": GOOD_TOKEN,
        "remoteip": "127.0.0.1",
    }

    status, _ = await _post(client, SEND, {"email": "cap@example.com", "captcha_token": GOOD_TOKEN})
    assert status == 200
    code = mail.code_in(await mail.wait_for_mail("cap@example.com"))
    status, answer = await _register(client, "cap@example.com", code, captcha_token=GOOD_TOKEN)
    assert status == 200, answer
    # The seed puts only login and the two register calls behind the captcha.
    assert (await _post(client, RESET_SEND, {"email": "cap@example.com"}))[0] == 200


async def test_unreachable_verifier_counts_as_a_failed_captcha(
    captcha: HCaptchaVerifier,
) -> None:
    ok = await captcha.verify(
        verify_url="http://127.0.0.1:9/siteverify", secret="s", token="t", remote_ip=None
    )
    assert ok is False
