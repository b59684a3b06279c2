"""Who carries SMS and email: a provider per channel, chosen by settings.

`log` writes each message to the service log (development: read codes and notices there); `smtp` sends email
through an SMTP server (STARTTLS or TLS, optional login); `none` means the channel is not offered, and sending a
template of that channel is refused. SMS gateways of the carriers (and of cloud vendors) plug in here.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from tongban_message.config import Settings
from tongban_message.models import Channel

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The provider did not take the message; `permanent` ones are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    """One SMS or email to hand over."""

    delivery_id: str
    channel: Channel
    address: str
    subject: str
    body: str


class Provider(Protocol):
    """Carries messages of one channel."""

    name: str

    async def send(self, item: Outgoing) -> None:
        """Hand the message over; raise DeliveryError when it was not taken."""


def mask_address(address: str) -> str:
    """138****8000 for a mobile number, z***@example.gov.cn for an email address."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(address) >= 7:
        return f"{address[:3]}****{address[-4:]}"
    return "***"


class LogProvider:
    """Development: each message goes to the log (masked address) and to `sent` for tests."""

    name = "log"

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    async def send(self, item: Outgoing) -> None:
        self.sent.append(item)
        del self.sent[:-1000]
        log.info(
            "development %s to %s: %s %s",
            item.channel,
            mask_address(item.address),
            item.subject,
            item.body,
            extra={"delivery_id": item.delivery_id},
        )


class SmtpProvider:
    """Email through an SMTP server, one connection per message (on a worker thread)."""

    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _send(self, item: Outgoing) -> None:
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.smtp_from
        msg["To"] = item.address
        msg["Subject"] = item.subject
        msg["Message-ID"] = make_msgid(idstring=item.delivery_id.replace("-", ""), domain=_domain(s.smtp_from))
        msg.set_content(item.body)
        context = ssl.create_default_context()
        try:
            if s.smtp_security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=context
                )
            else:
                client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            with client:
                if s.smtp_security == "starttls":
                    client.starttls(context=context)
                if s.smtp_username:
                    client.login(s.smtp_username, s.smtp_password.get_secret_value())
                client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"the mail server refused the address: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"the mail server did not take the message: {type(exc).__name__}: {exc}") from None

    async def send(self, item: Outgoing) -> None:
        await asyncio.to_thread(self._send, item)


def _domain(sender: str) -> str:
    try:
        return Address(addr_spec=sender.rsplit("<", 1)[-1].rstrip(">").strip()).domain or "localhost"
    except (ValueError, IndexError):
        return "localhost"


def make_providers(settings: Settings) -> dict[Channel, Provider]:
    """The providers the settings name (a channel set to `none` is left out: not offered)."""
    out: dict[Channel, Provider] = {}
    if settings.sms_provider == "log":
        out[Channel.sms] = LogProvider()
    if settings.email_provider == "log":
        out[Channel.email] = LogProvider()
    elif settings.email_provider == "smtp":
        out[Channel.email] = SmtpProvider(settings)
    return out
