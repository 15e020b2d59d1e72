"""A local SMTP server (aiosmtpd) that keeps what it receives, parsed.

Mail reaches it through the real aiosmtplib client; tests read codes out of the real
messages. It listens on 127.0.0.1 on a port picked at construction, so a test can
configure the address first and start the server later (an outage that ends).

    server = FakeSmtpServer(credentials=("mailer", "s3cret"))
    await server.start()
    message = await server.wait_for_mail("ann@example.com")
    code = server.code_in(message)
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from kubebyon.domain.system_settings import SmtpConfig
from kubebyon.secretbox import SecretBox
from tests.support import wait_until

# aiosmtpd logs whole SMTP conversations at DEBUG: the fake's chatter, not ours, and it
# would put message bodies (codes) into the logs the redaction tests scan.
logging.getLogger("mail.log").setLevel(logging.WARNING)

_CODE = re.compile(r"\b(\d{6})\b")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Handler:
    def __init__(self, server: FakeSmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.server.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.server.lock:
            self.server.messages.append(parsed)
        return "250 Message accepted"


class FakeSmtpServer:
    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.credentials = credentials
        self.reject: set[str] = set()
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def config(self, secrets: SecretBox) -> SmtpConfig:
        """System settings that point at this server (plain SMTP on loopback)."""
        username, password = self.credentials or ("", "")
        return SmtpConfig(
            host=self.host,
            port=self.port,
            security="none",
            username=username,
            password_encrypted=secrets.encrypt(password) if password else None,
            from_address="KubeBYON <noreply@kubebyon.test>",
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.credentials == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)  # the server answers 235 or 535

    async def start(self) -> None:
        auth: dict[str, Any] = {}
        if self.credentials is not None:
            auth = {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **auth)
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        if self._controller is not None:
            await asyncio.to_thread(self._controller.stop)
            self._controller = None

    def mail_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]

    async def wait_for_mail(self, address: str, count: int = 1) -> EmailMessage:
        """The ``count``-th message to ``address`` (waits for it)."""
        await wait_until(lambda: len(self.mail_to(address)) >= count, what=f"mail to {address}")
        return self.mail_to(address)[count - 1]

    @staticmethod
    def text(message: EmailMessage) -> str:
        body = message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @classmethod
    def code_in(cls, message: EmailMessage) -> str:
        found = _CODE.search(cls.text(message))
        assert found, "no six-digit code in the message"
        return found.group(1)
