"""Invariant 8 against a hostile caller: text a caller sends with a request that is refused
must not reach the permanent log, which outlives every erasure. It does today (dataset,
purpose, column names are logged verbatim in the denial); this test records the hole until the
decision event digests caller text (docs/security.md, T13)."""

from __future__ import annotations

import json

import pytest

from tests.security.scene import Scene

PERSONAL = "Maria Schmidt 1980-02-03 HIV positive"


@pytest.mark.xfail(
    strict=True,
    reason="open: denied decisions log the caller's dataset, purpose and column text verbatim",
)
def test_text_sent_with_a_denied_request_never_reaches_the_log(scene: Scene) -> None:
    start = scene.log_size()
    bodies = [
        {"resource": {"dataset": PERSONAL}, "context": {"purpose": "training"}},
        {"resource": {"dataset": "patient_notes"}, "context": {"purpose": PERSONAL}},
        {
            "resource": {"dataset": "patient_notes", "columns": [PERSONAL]},
            "context": {"purpose": "training"},
        },
    ]
    for body in bodies:
        response = scene.client.post("/v1/decisions", json=body, headers=scene.headers("trainer"))
        assert response.status_code == 200 and response.json()["decision"] == "deny"
    entries = scene.entries_since(start)
    assert len(entries) == len(bodies)
    assert all(e["data"]["decision"] == "deny" for e in entries)
    assert not [e for e in entries if "Maria Schmidt" in json.dumps(e)]
