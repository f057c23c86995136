"""A real SMTP server in the test process (aiosmtpd) and an HTTP client that keeps the session cookie as a
browser does (Secure cookies included, which httpx would not send to a plain-http test server)."""

import email
import email.policy
import random
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from http.cookies import SimpleCookie
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from api.deps import CSRF_COOKIE, CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE

LINK = re.compile(r"/account#/(verify|reset)/([A-Za-z0-9_-]+)")


class Mailbox:
    """Every message the server accepted, and a gate to wait for the next one."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self.url = ""

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, to: str, count: int = 1, timeout: float = 30) -> EmailMessage:
        """The `count`-th message to an address, once it has arrived."""
        with self._arrived:
            ok = self._arrived.wait_for(lambda: len(self.to(to)) >= count, timeout=timeout)
        assert ok, f"no mail #{count} to {to} within {timeout}s (got {[m['To'] for m in self.messages]})"
        return self.to(to)[count - 1]

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_token(message: EmailMessage, purpose: str) -> str:
    found = LINK.search(body_of(message))
    assert found is not None and found.group(1) == purpose, body_of(message)
    return found.group(2)


def another_address() -> dict[str, str]:
    """Headers that make a request come from an address of its own (the test server trusts X-Forwarded-For from
    loopback, as uvicorn does behind a proxy by default): the throttle's per-address windows of different tests,
    which share a database, stay apart."""
    octets = (random.randrange(256), random.randrange(256), random.randrange(1, 255))
    return {"X-Forwarded-For": "10.{}.{}.{}".format(*octets)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on loopback; `mailbox.url` is its SMTP_URL."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.url = f"smtp://127.0.0.1:{controller.port}"
    try:
        yield mailbox
    finally:
        controller.stop()


class CookieClient:
    """Keeps the cookies the server sets (all of them: the test server is plain http on loopback, which browsers
    treat as secure) and sends the CSRF token of its session with every change, as the web app does."""

    def __init__(self, base_url: str, user_agent: str = "test-browser") -> None:
        headers = {"User-Agent": user_agent, **another_address()}
        self.http = httpx.Client(base_url=base_url, timeout=30, headers=headers)
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    def close(self) -> None:
        self.http.close()

    @property
    def session_token(self) -> str | None:
        return self.cookies.get(SESSION_COOKIE)

    def request(self, method: str, path: str, csrf: bool = True, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if csrf and method not in SAFE_METHODS and CSRF_COOKIE in self.cookies:
            headers[CSRF_HEADER] = self.cookies[CSRF_COOKIE]
        response = self.http.request(method, path, headers=headers, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)
