"""Serves the web app at `/`, its static files, and the API docs at `/docs` from local Swagger UI assets."""

import base64
import hashlib
import json
import re
from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from core.config import Settings
from core.vocabulary import TIERS

STATIC_DIR = Path(__file__).parent / "static"
# Swagger UI's own files, shipped inside the fastapi-offline wheel: /docs needs no network.
SWAGGER_DIR = Path(str(files("fastapi_offline") / "static"))

# Only our own origin may provide scripts, styles and images; images also come from blob: URLs (fetched with the
# API key, which an <img src> could not send).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def docs_policy(html: str) -> str:
    """The policy of /docs: Swagger UI from this origin, and only the page's own inline start-up script (by its
    hash); Swagger UI sets inline styles on its elements, so styles may be inline."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def page(settings: Settings) -> str:
    """The single page, with the limits it shows (each tier's cost, the batch size, the upload size) filled in
    from the settings; what an enhance would do, the page asks the server (the quote)."""
    limits = {
        "maxBatchSize": settings.max_batch_size,
        "tierCosts": {tier.value: spec.cost for tier, spec in TIERS.items()},
        "maxUploadBytes": settings.max_upload_bytes,
        "tokensHelpUrl": settings.tokens_help_url,
    }
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    # Escaped as an attribute value: an operator's URL may hold "&".
    return html.replace("{{LIMITS}}", escape(json.dumps(limits), quote=True))


def install(app: FastAPI, settings: Settings) -> None:
    """Add the web app's routes to the application."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/vendor/swagger-ui", StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(
            page(settings),
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
        )

    @app.get("/account", include_in_schema=False)
    def account() -> HTMLResponse:
        """Sign up, sign in, forgotten passwords, and the account itself (static/account.js)."""
        return HTMLResponse(
            (STATIC_DIR / "account.html").read_text(encoding="utf-8"),
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
        )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        html = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
        body = bytes(html.body)
        return HTMLResponse(body, headers={"Content-Security-Policy": docs_policy(body.decode())})
