"""Notifications: deliver outbox rows (one key per row) and clear their bodies.

Mail goes out through the SMTP settings admins keep in system settings; the stored
password is decrypted here and handed to the adapter as a plain value. A failure is
retried with the runtime's per-key backoff until ``max_attempts``; then the row is
marked failed with the reason. Sent or failed, the body (which may hold a code) is
dropped and the key forgotten.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from kubebyon.adapters.smtp import MailDeliveryError, MailRejected, SmtpServer, send_mail
from kubebyon.db.database import Database
from kubebyon.db.outbox import NOTIFICATIONS
from kubebyon.domain.system_settings import SmtpConfig, SystemSettings
from kubebyon.runtime.contract import Context, Result, TemporaryError
from kubebyon.secretbox import SecretBox, SecretKeyError

MAX_ERROR_LENGTH = 500


class NotificationsReconciler:
    name = NOTIFICATIONS
    resync_interval = 300.0
    max_concurrency = 4
    timeout = 90.0  # the adapter's own timeouts and quick retries fit well inside

    def __init__(self, secrets: SecretBox, *, max_attempts: int = 10) -> None:
        # 10 attempts with the runtime's default backoff span about eight minutes: long
        # enough to ride out a short outage, short enough for a code that expires in 10.
        self.secrets = secrets
        self.max_attempts = max_attempts

    async def keys(self, db: Database) -> AsyncIterator[str]:
        for row in await db.fetch(db.q.pending_outbox_ids):
            yield row["id"]

    async def reconcile(self, key: str, ctx: Context) -> Result:
        db = ctx.db
        row = await db.fetchrow(db.q.get_outbox, key)
        if row is None or row["status"] != "pending":
            return Result(forget=True)
        if row["channel"] != "email":
            return await self._fail(ctx, key, f"no sender for channel {row['channel']!r}", 1)
        try:
            server = self._smtp_server(await self._smtp_config(db))
            body = self.secrets.decrypt(row["body"])
            await send_mail(
                server, to=row["recipient"], subject=row["subject"], body=body, message_id=key
            )
        except MailRejected as exc:
            return await self._fail(ctx, key, str(exc), 1)
        except (MailDeliveryError, SecretKeyError) as exc:
            return await self._fail(ctx, key, str(exc), self.max_attempts)
        await db.execute(db.q.mark_outbox_sent, key)
        ctx.log.info("mail sent", outbox_id=key)
        return Result(forget=True)

    async def _smtp_config(self, db: Database) -> SmtpConfig:
        row = await db.fetchrow(db.q.get_system_settings)
        return SystemSettings.model_validate(row["document"] if row else {}).smtp

    def _smtp_server(self, smtp: SmtpConfig) -> SmtpServer:
        if not smtp.host or not smtp.from_address:
            # Mails wait (and back off) until an admin configures SMTP.
            raise MailDeliveryError("SMTP is not configured (system settings: smtp)")
        password = self.secrets.decrypt(smtp.password_encrypted) if smtp.password_encrypted else ""
        return SmtpServer(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=password,
            from_address=smtp.from_address,
        )

    async def _fail(self, ctx: Context, key: str, error: str, give_up_after: int) -> Result:
        """Count a failed attempt; retry later unless this was the last one."""
        error = error[:MAX_ERROR_LENGTH]
        row = await ctx.db.fetchrow(ctx.db.q.record_outbox_failure, key, error, give_up_after)
        if row is None or row["status"] == "failed":
            ctx.log.warning("mail not delivered; giving up", outbox_id=key, error=error)
            return Result(forget=True)
        raise TemporaryError(error)
