"""The web app's page, its assets and the API docs are all served by the service itself: nothing from a CDN."""

import re

from tests.conftest import Harness


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
