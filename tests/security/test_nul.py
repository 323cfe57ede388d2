"""NUL characters, on SQLite and PostgreSQL (whose text refuses them): every request carrying
one is a deny or a 4xx, never a 5xx, and never fails anyone else's request. Before the fix a
decision about dataset "x\\0" failed the log's group commit on PostgreSQL: a 503 for the
sender and for every caller whose decision shared the batch, and lookups by id answered 500."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pyarrow.flight as flight
import pytest

from tests.conftest import serve_rest
from tests.security.scene import Scene, flight_options, flight_refusal, refusal
from tests.unit.flight.serving import flight_server

_READ: dict[str, Any] = {
    "resource": {"dataset": "patient_notes"},
    "context": {"purpose": "training"},
}


def _nul_bodies() -> list[dict[str, Any]]:
    return [
        {"resource": {"dataset": "patient_notes\x00"}, "context": {"purpose": "training"}},
        {"resource": {"dataset": "patient_notes"}, "context": {"purpose": "training\x00"}},
        {
            "resource": {"dataset": "patient_notes", "columns": ["age\x00"]},
            "context": {"purpose": "training"},
        },
        _READ | {"subject": {"id": "demo-trainer\x00"}},
        _READ | {"action": "read\x00"},
    ]


def test_nul_in_a_request_is_a_deny_or_a_4xx(any_scene: Scene) -> None:
    scene = any_scene
    for role in ("trainer", "admin"):
        for body in _nul_bodies():
            response = scene.client.post("/v1/decisions", json=body, headers=scene.headers(role))
            assert response.status_code < 500, (body, response.text)
            if response.status_code == 200:
                assert response.json()["decision"] == "deny"
            else:
                refusal(response, response.status_code)
    for path in (
        "/v1/runs/r%00",
        "/v1/erasure-requests/er%00",
        "/v1/jobs/j%00",
        "/v1/datasets/x%00",
    ):
        response = scene.client.get(path, headers=scene.headers("admin"))
        assert 400 <= response.status_code < 500, (path, response.text)
        refusal(response, response.status_code)


def test_nul_in_a_ticket_is_refused(any_scene: Scene) -> None:
    token = any_scene.tokens["trainer"]
    tickets = [
        {"dataset": "patient_notes\x00", "purpose": "training", "run_id": "r"},
        {"dataset": "patient_notes", "purpose": "training\x00", "run_id": "r"},
        {"dataset": "patient_notes", "purpose": "training", "run_id": "r\x00"},
    ]
    with (
        any_scene.unchanged(),
        flight_server(any_scene.gateway) as server,
        flight.connect(server.location) as client,
    ):
        for fields in tickets:
            with pytest.raises(flight.FlightError) as caught:
                client.do_get(flight.Ticket(json.dumps(fields).encode()), flight_options(token))
            assert not isinstance(caught.value, flight.FlightInternalError)
            assert flight_refusal(caught.value)["error"] in {"bad_request", "forbidden"}


def test_nul_requests_do_not_fail_other_callers_decisions(any_scene: Scene) -> None:
    """Hostile and honest decisions at once, over a real server: the log commits them in
    groups, and every honest one must still be allowed."""
    poison = _nul_bodies()[0]
    with serve_rest(any_scene.gateway) as url, httpx.Client(base_url=url, timeout=60) as client:
        headers = any_scene.headers("trainer")

        def send(body: dict[str, Any]) -> httpx.Response:
            return client.post("/v1/decisions", json=body, headers=headers)

        bodies = [poison if i % 2 else _READ for i in range(40)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(send, bodies))
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = "deny" if body is poison else "allow"
        assert response.json()["decision"] == expected
