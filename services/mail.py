"""Outgoing mail: over SMTP when SMTP_URL names a server, else written to the log (development).

SMTP_URL: smtp://[user:password@]host[:port] (STARTTLS when the server offers it, required with a password;
port 25 by default, usually 587), or smtps://[user:password@]host[:port] (TLS from the start, 465 by default).
"""

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

from core.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, mail: Mail) -> None: ...


def compose(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> ") or None)
    message.set_content(mail.body)
    return message


@dataclass(frozen=True)
class SmtpMailer:
    url: str
    sender: str
    timeout: float

    def send(self, mail: Mail) -> None:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        secure = parts.scheme == "smtps"
        port = parts.port or (465 if secure else 25)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP = (
            smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=context)
            if secure
            else smtplib.SMTP(host, port, timeout=self.timeout)
        )
        with smtp:
            smtp.ehlo()
            encrypted = secure
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if parts.username:
                if not encrypted:
                    raise smtplib.SMTPException("the server offers no STARTTLS: the password is not sent in clear")
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(compose(mail, self.sender))


@dataclass(frozen=True)
class LogMailer:
    """Development: the mail goes to the log (with its links), nothing is sent."""

    sender: str

    def send(self, mail: Mail) -> None:
        log.warning("mail not sent (SMTP_URL is unset) to %s: %s\n%s", mail.to, mail.subject, mail.body)


def mailer_from(settings: Settings) -> Mailer:
    if settings.smtp_url:
        if urlsplit(settings.smtp_url).scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        return SmtpMailer(settings.smtp_url, settings.mail_from, settings.smtp_timeout_seconds)
    return LogMailer(settings.mail_from)


def send_quietly(mailer: Mailer, mail: Mail) -> None:
    """Send after the answer has gone out: a mail server that is down must not tell a caller whether an account
    exists (by an error or by time), so a failure is logged, never raised."""
    try:
        mailer.send(mail)
    except Exception:
        log.exception("could not send mail %r", mail.subject)
