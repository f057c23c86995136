"""Every answer carries the security headers, whoever gave it; /docs has a content security policy that lets only
its own scripts run."""

import base64
import hashlib
import re

from tests.conftest import Harness
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
