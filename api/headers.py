"""Security headers on every response, whatever answered it (a route, an error handler or a guard)."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The API's answers are JSON, images and zips, never pages to frame; a page that sets its own policy (the web app,
# /docs) keeps it.
DEFAULT_POLICY = b"default-src 'none'; frame-ancestors 'none'"
_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Adds nosniff, a referrer policy and frame refusal to every response, and a closed content security policy
    to any response without one of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _HEADERS if name not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", DEFAULT_POLICY))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
