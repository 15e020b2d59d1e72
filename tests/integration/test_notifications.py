"""The outbox and the notifications reconciler, on the real Runtime and real PostgreSQL,
delivering through aiosmtplib to a local aiosmtpd server."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from cryptography.fernet import Fernet

from kubebyon.db.database import Database
from kubebyon.db.outbox import NOTIFICATIONS, enqueue_mail
from kubebyon.db.system_settings import SystemSettingsStore
from kubebyon.domain.system_settings import SmtpConfig, SystemSettings
from kubebyon.runtime.driver import Runtime
from kubebyon.secretbox import SecretBox
from reconcilers.notifications import NotificationsReconciler
from tests.fakes.smtp import FakeSmtpServer
from tests.support import queue_row, wait_until

BODY = "Your verification code is 424242."


@pytest.fixture
def secrets() -> SecretBox:
    return SecretBox([Fernet.generate_key()])


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSmtpServer]:
    server = FakeSmtpServer()
    yield server
    await server.stop()


async def _use_smtp(db: Database, config: SmtpConfig) -> None:
    async with db.transaction() as conn:
        await SystemSettingsStore(db).put(conn, SystemSettings(smtp=config), None)


@asynccontextmanager
async def running(db: Database, secrets: SecretBox, **options: Any) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        db,
        [NotificationsReconciler(secrets, **options)],
        lease_seconds=5.0,
        idle_poll_seconds=1.0,
        backoff_base=0.05,
        backoff_cap=0.3,
        rng=random.Random(3),
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace=5.0)


async def _enqueue(db: Database, secrets: SecretBox, to: str = "ann@example.com") -> str:
    async with db.transaction() as conn:
        return await enqueue_mail(conn, secrets, to=to, subject="Hello", body=BODY)


async def _outbox(db: Database, outbox_id: str) -> Any:
    return await db.fetchrow("SELECT * FROM outbox WHERE id = $1", outbox_id)


async def _status(db: Database, outbox_id: str, status: str) -> Any:
    row = await _outbox(db, outbox_id)
    return row if row["status"] == status else None


async def test_body_is_encrypted_at_rest_and_cleared_once_sent(
    db: Database, secrets: SecretBox, smtp: FakeSmtpServer
) -> None:
    await smtp.start()
    await _use_smtp(db, smtp.config(secrets))
    outbox_id = await _enqueue(db, secrets)
    stored = await _outbox(db, outbox_id)
    assert stored["status"] == "pending" and "424242" not in stored["body"]
    assert secrets.decrypt(stored["body"]) == BODY

    async with running(db, secrets):
        message = await smtp.wait_for_mail("ann@example.com")
        sent = await wait_until(lambda: _status(db, outbox_id, "sent"), what="marked sent")
    assert FakeSmtpServer.text(message).strip() == BODY
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == f"<{outbox_id}@kubebyon.test>"
    assert sent["body"] is None and sent["sent_at"] is not None and sent["last_error"] is None
    assert await queue_row(db, NOTIFICATIONS, outbox_id) is None  # forgotten
    assert len(smtp.mail_to("ann@example.com")) == 1


async def test_rolled_back_request_sends_nothing(db: Database, secrets: SecretBox) -> None:
    async def failing_request() -> None:
        async with db.transaction() as conn:
            await enqueue_mail(conn, secrets, to="ann@example.com", subject="s", body=BODY)
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        await failing_request()
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert await db.fetchval("SELECT count(*) FROM reconcile_queue") == 0


async def test_smtp_down_is_retried_with_backoff_and_recovers(
    db: Database,
    secrets: SecretBox,
    smtp: FakeSmtpServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _use_smtp(db, smtp.config(secrets))  # configured, not listening yet
    outbox_id = await _enqueue(db, secrets)
    async with running(db, secrets):

        async def failed_twice() -> Any:
            row = await _outbox(db, outbox_id)
            return row if row["attempts"] >= 2 else None

        row = await wait_until(failed_twice, what="two failed attempts")
        assert row["status"] == "pending"
        assert f"127.0.0.1:{smtp.port}" in row["last_error"]
        queued = await queue_row(db, NOTIFICATIONS, outbox_id)
        assert queued["attempts"] >= 1 and queued["last_error"]

        await smtp.start()
        await smtp.wait_for_mail("ann@example.com")
        sent = await wait_until(lambda: _status(db, outbox_id, "sent"), what="sent")
    assert sent["body"] is None
    out, err = capfd.readouterr()
    assert "424242" not in out + err + caplog.text


async def test_gives_up_after_max_attempts(
    db: Database, secrets: SecretBox, smtp: FakeSmtpServer
) -> None:
    await _use_smtp(db, smtp.config(secrets))  # never starts
    outbox_id = await _enqueue(db, secrets)
    async with running(db, secrets, max_attempts=2):
        failed = await wait_until(lambda: _status(db, outbox_id, "failed"), what="failed")
        await wait_until(
            lambda: _forgotten(db, outbox_id), what="queue row dropped after giving up"
        )
    assert failed["attempts"] == 2 and failed["body"] is None
    assert "Connect" in failed["last_error"] or "connect" in failed["last_error"]


async def _forgotten(db: Database, outbox_id: str) -> bool:
    return await queue_row(db, NOTIFICATIONS, outbox_id) is None


async def test_a_refused_recipient_fails_at_once(
    db: Database, secrets: SecretBox, smtp: FakeSmtpServer
) -> None:
    smtp.reject.add("gone@example.com")
    await smtp.start()
    await _use_smtp(db, smtp.config(secrets))
    outbox_id = await _enqueue(db, secrets, to="gone@example.com")
    async with running(db, secrets):
        failed = await wait_until(lambda: _status(db, outbox_id, "failed"), what="failed")
    assert failed["attempts"] == 1 and failed["body"] is None
    assert "550" in failed["last_error"]


async def test_smtp_password_is_decrypted_for_login(db: Database, secrets: SecretBox) -> None:
    server = FakeSmtpServer(credentials=("mailer", "smtp-pass-123"))
    await server.start()
    try:
        wrong = server.config(secrets).model_copy(
            update={"password_encrypted": secrets.encrypt("not-the-password")}
        )
        await _use_smtp(db, wrong)
        outbox_id = await _enqueue(db, secrets)
        async with running(db, secrets):

            async def auth_failed() -> Any:
                row = await _outbox(db, outbox_id)
                return row if "authentication failed" in (row["last_error"] or "") else None

            row = await wait_until(auth_failed, what="authentication failure recorded")
            assert "not-the-password" not in row["last_error"]
            await _use_smtp(db, server.config(secrets))  # the admin fixes the password
            await server.wait_for_mail("ann@example.com")
            await wait_until(lambda: _status(db, outbox_id, "sent"), what="sent")
    finally:
        await server.stop()


async def test_unconfigured_smtp_keeps_mail_pending(db: Database, secrets: SecretBox) -> None:
    outbox_id = await _enqueue(db, secrets)
    async with running(db, secrets):

        async def waiting() -> Any:
            row = await _outbox(db, outbox_id)
            return row if row["last_error"] else None

        row = await wait_until(waiting, what="a recorded attempt")
    assert row["status"] == "pending" and row["body"] is not None
    assert "SMTP is not configured" in row["last_error"]


async def test_resync_lists_pending_messages(db: Database, secrets: SecretBox) -> None:
    outbox_id = await _enqueue(db, secrets)
    await db.execute("DELETE FROM reconcile_queue")  # as if the wake-up was lost
    keys = [key async for key in NotificationsReconciler(secrets).keys(db)]
    assert keys == [outbox_id]
