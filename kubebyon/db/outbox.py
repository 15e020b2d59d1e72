"""The outbox: messages an API request wants delivered, written in its transaction.

Nothing is sent inside a request. The row (body encrypted, since mails carry codes) and
the wake-up of the notifications reconciler commit together with the change that
caused them, so a rolled-back request sends nothing and a committed one is never lost.
"""

from __future__ import annotations

from kubebyon.db.database import Conn
from kubebyon.db.desired_state import wake
from kubebyon.db.queries import QUERIES as Q
from kubebyon.domain.ids import new_id
from kubebyon.secretbox import SecretBox

NOTIFICATIONS = "notifications"  # the reconciler that delivers outbox rows


async def enqueue_mail(conn: Conn, secrets: SecretBox, *, to: str, subject: str, body: str) -> str:
    outbox_id = new_id("msg")
    await conn.execute(Q.insert_outbox, outbox_id, "email", to, subject, secrets.encrypt(body))
    await wake(conn, NOTIFICATIONS, outbox_id)
    return outbox_id
