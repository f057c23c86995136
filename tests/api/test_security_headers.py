"""Every answer carries the security headers, whoever gave it; /docs has a content security policy that lets only
its own scripts run; wrong API keys are throttled per client address."""

import base64
import hashlib
import re
from pathlib import Path

from api.limits import FailedAuthThrottle
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings
from tests.factories import make_user


def test_every_answer_has_the_security_headers(direct_harness: Harness) -> None:
    h = direct_harness
    user = make_user(h.engine)
    answers = [
        h.http.get("/api/me", headers=user.headers),  # a route
        h.http.get("/api/me"),  # an error handler
        h.http.post("/api/albums", headers=user.headers, content=b"x" * (h.settings.max_json_bytes + 1)),  # a guard
        h.http.get("/healthz"),
        h.http.get("/static/app.js"),
    ]
    assert [a.status_code for a in answers] == [200, 401, 413, 200, 200]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert answers[0].headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_docs_allow_only_their_own_inline_script(direct_harness: Harness) -> None:
    docs = direct_harness.http.get("/docs")
    policy = docs.headers["Content-Security-Policy"]
    [inline] = re.findall(r"<script>(.*?)</script>", docs.text, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    # The web app's page keeps its own, stricter policy.
    assert "style-src 'self';" in direct_harness.http.get("/").headers["Content-Security-Policy"]


def test_wrong_keys_from_one_address_are_throttled(sqlite_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(sqlite_url, storage, auth_failures_per_address=3, auth_failure_window_seconds=3600)
    user = make_user(engine_for(sqlite_url))
    wrong = {"Authorization": "Bearer ae_not-a-key"}
    with LiveServer(settings) as api:
        assert [api.http.get("/api/me", headers=wrong).status_code for _ in range(3)] == [401, 401, 401]
        refused = api.http.get("/api/me", headers=wrong)
        assert refused.status_code == 429
        assert refused.json()["error"].startswith("Too many wrong API keys from this address; retry in ")
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
        # The address, not the key, is held back: nothing is looked up for it until the window has passed.
        assert api.http.get("/api/me", headers=user.headers).status_code == 429
        assert api.http.get("/healthz").status_code == 200


def test_the_throttle_forgets_failures_as_they_leave_the_window() -> None:
    now = [1000.0]
    throttle = FailedAuthThrottle(limit=2, window_seconds=60, clock=lambda: now[0])
    throttle.failed("10.0.0.1")
    now[0] += 30
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 30 and throttle.retry_after("10.0.0.2") is None
    now[0] += 30  # the first failure leaves the window
    assert throttle.retry_after("10.0.0.1") is None
