"""Sending mail over SMTP with aiosmtplib.

Callers pass plain connection values (the reconciler decrypts the stored password).
Connection problems get a couple of quick retries here; anything longer is the
reconciler's per-key backoff. Errors carry the server and the reason, never the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Literal

import aiosmtplib
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

TIMEOUT_SECONDS = 20.0  # per SMTP operation (connect, each command)
_TRANSIENT = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    ConnectionError,
)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str
    password: str
    from_address: str


class MailDeliveryError(Exception):
    """Not delivered this time; trying again later may succeed."""


class MailRejected(MailDeliveryError):
    """The server refused the message for good (a 5xx answer to the sender, a recipient
    or the data): retrying would only repeat the refusal."""


def build_message(
    server: SmtpServer, *, to: str, subject: str, body: str, message_id: str | None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = server.from_address
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    if message_id is not None:
        # Stable across retries, so a receiving server can drop a duplicate.
        domain = parseaddr(server.from_address)[1].rpartition("@")[2] or "kubebyon"
        message["Message-ID"] = f"<{message_id}@{domain}>"
    message.set_content(body)
    return message


async def send_mail(
    server: SmtpServer, *, to: str, subject: str, body: str, message_id: str | None = None
) -> None:
    message = build_message(server, to=to, subject=subject, body=body, message_id=message_id)
    where = f"{server.host}:{server.port}"
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.2, max=1.0),
            reraise=True,
        ):
            with attempt:
                await aiosmtplib.send(
                    message,
                    hostname=server.host,
                    port=server.port,
                    username=server.username or None,
                    password=server.password if server.username else None,
                    use_tls=server.security == "tls",
                    start_tls=server.security == "starttls",
                    timeout=TIMEOUT_SECONDS,
                )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [refused.code for refused in exc.recipients]
        error = f"{where}: recipient refused ({', '.join(map(str, codes))})"
        if codes and all(code >= 500 for code in codes):
            raise MailRejected(error) from None
        raise MailDeliveryError(error) from None
    except aiosmtplib.SMTPAuthenticationError as exc:
        # A settings problem an admin can fix: not a rejection of this message.
        raise MailDeliveryError(f"{where}: authentication failed ({exc.code})") from None
    except (
        aiosmtplib.SMTPSenderRefused,
        aiosmtplib.SMTPRecipientRefused,
        aiosmtplib.SMTPDataError,
    ) as exc:
        error = f"{where}: {type(exc).__name__} {exc.code} {exc.message}"
        raise (MailRejected if exc.code >= 500 else MailDeliveryError)(error) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise MailDeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
