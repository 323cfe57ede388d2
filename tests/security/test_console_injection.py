"""The console renders text that callers wrote (dataset descriptions, policy rules, log data):
none of it becomes markup, every view is served under a script-only-from-self CSP, and a view
name cannot reach a template the console does not offer."""

from __future__ import annotations

from urllib.parse import quote

import pyarrow as pa

from tests.conftest import TEST_ACTOR
from tests.security.scene import Scene, refusal

_XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
_VIEWS = ("overview", "log", "ledger", "datasets", "policies", "compliance", "erasure", "runs")


def test_text_written_by_callers_is_escaped_in_every_view(scene: Scene) -> None:
    commands = scene.gateway.commands
    commands.register_dataset(
        "planted", pa.table({"sid": ["s1"], "v": [1]}), "sid", TEST_ACTOR, description=_XSS
    )
    rules = [list(r) for r in scene.gateway.queries.policy().rules]
    commands.put_policy(
        None,
        [*rules, ["p", f"r.sub.role == {_XSS!r}", "planted", "read", "audit", "True", "allow"]],
        TEST_ACTOR,
    )
    headers = scene.headers("admin")
    seen = ""
    for view in _VIEWS:
        response = scene.client.get(f"/console/views/{view}", headers=headers)
        assert response.status_code == 200, (view, response.text)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "<script>alert" not in response.text and "<img src=x" not in response.text
        seen += response.text
    detail = scene.client.get("/console/views/datasets?name=planted", headers=headers).text
    assert "<script>alert" not in detail
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in seen + detail  # shown, as text


def test_a_view_name_reaches_no_other_template(scene: Scene) -> None:
    headers = scene.headers("admin")
    with scene.unchanged():
        for name in ("page", "../page", "..%2Fpage", "overview.html", "base", "%00"):
            response = scene.client.get(f"/console/views/{quote(name, safe='%')}", headers=headers)
            assert response.status_code == 404, (name, response.text)
            refusal(response, 404)


def test_trainers_get_no_console_view(scene: Scene) -> None:
    with scene.unchanged():
        for view in ("nav", *_VIEWS):
            response = scene.client.get(f"/console/views/{view}", headers=scene.headers("trainer"))
            assert refusal(response, 403)["error"] == "forbidden", view
