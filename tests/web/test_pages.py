"""The web app's page, its assets and the API docs are all served by the service itself: nothing from a CDN."""

import json
import re
from html import unescape

import pytest
from pydantic import ValidationError

from core.config import Settings
from tests.conftest import Harness
from web.app import page


def test_the_page_and_everything_it_loads_come_from_this_origin(direct_harness: Harness) -> None:
    h = direct_harness
    page = h.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "an asset from another origin"
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", page.text)
    assert {"/static/app.js", "/static/app.css", "/static/favicon.svg"} <= set(assets)
    for asset in assets:
        assert h.http.get(asset).status_code == 200, asset
    # The limits the page shows come from the settings, not from a copy in the script.
    assert f"&quot;maxBatchSize&quot;: {h.settings.max_batch_size}" in page.text
    assert "&quot;TIER_4K&quot;: 10" in page.text


def test_api_docs_load_swagger_ui_from_this_service(direct_harness: Harness) -> None:
    h = direct_harness
    docs = h.http.get("/docs")
    assert docs.status_code == 200
    scripts = re.findall(r"<(?:script|link)[^>]+(?:src|href)=['\"]([^'\"]+)['\"]", docs.text)
    assert scripts and all(url.startswith("/") and not url.startswith("//") for url in scripts), scripts
    for url in scripts:
        response = h.http.get(url)
        assert response.status_code == 200 and len(response.content) > 0, url
    assert "cdn" not in docs.text.lower()
    assert h.http.get("/openapi.json").status_code == 200


def limits_of(settings: Settings) -> dict[str, object]:
    """The limits the page's meta tag holds, read back as a browser would."""
    found = re.search(r'<meta name="limits" content="([^"]*)">', page(settings))
    assert found is not None
    return dict(json.loads(unescape(found[1])))


def test_the_tokens_help_url_reaches_the_page_escaped_and_only_as_a_web_or_mail_address() -> None:
    url = "https://shop.example/tokens?plan=a&copy=1"  # "&copy" unescaped would read as the character entity
    assert limits_of(Settings(_env_file=None, tokens_help_url=url))["tokensHelpUrl"] == url
    assert limits_of(Settings(_env_file=None))["tokensHelpUrl"] is None
    for bad in ("javascript:alert(1)", "data:text/html,hi", "//elsewhere.example", "https://a b"):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, tokens_help_url=bad)


def test_the_account_page_loads_only_from_this_origin(direct_harness: Harness) -> None:
    h = direct_harness
    page = h.http.get("/account")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "an asset from another origin"
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", page.text)
    assert {"/static/auth.js", "/static/account.js", "/static/account.css", "/static/app.css"} <= set(assets)
    for asset in assets:
        assert h.http.get(asset).status_code == 200, asset
