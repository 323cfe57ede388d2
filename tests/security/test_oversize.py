"""Oversized bodies, uploads, tickets and tokens against a real server (uvicorn on a free
loopback port, small caps): each is refused with a 4xx and a machine-readable reason before
it is held whole, and leaves nothing behind: no dataset, no temporary file, no log entry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.flight as flight
import pytest

from govern.flight.ticket import MAX_TICKET_BYTES
from tests.conftest import serve_rest
from tests.security.scene import Scene, flight_options, flight_refusal, open_scene, refusal
from tests.unit.flight.serving import flight_server

BODY_CAP = 8 * 1024
UPLOAD_CAP = 256 * 1024


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[Scene, str]]:
    with (
        open_scene(tmp_path, max_body_bytes=BODY_CAP, max_upload_bytes=UPLOAD_CAP) as scene,
        serve_rest(scene.gateway) as url,
    ):
        yield scene, url


def _chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def _multipart(payload: bytes, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {"name": "big", "subject_column": "sid"}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    head = "".join(parts).encode()
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    return head + payload + f"\r\n--{boundary}--\r\n".encode(), boundary


def _leftovers(scene: Scene) -> list[Path]:
    uploads = scene.gateway.settings.uploads_dir
    return list(uploads.rglob("*")) if uploads.exists() else []


def _too_large(response: httpx.Response, limit: int) -> None:
    body = refusal(response, 413)
    assert body["error"] == "payload_too_large"
    assert str(limit) in body["message"]


def test_a_json_body_over_the_cap_is_refused(capped: tuple[Scene, str]) -> None:
    scene, url = capped
    decision: dict[str, Any] = {
        "resource": {"dataset": "patient_notes", "columns": ["note_id"] * 900},
        "context": {"purpose": "training"},
    }
    raw = json.dumps(decision).encode()
    assert len(raw) > BODY_CAP
    headers = scene.headers("trainer") | {"content-type": "application/json"}
    with scene.unchanged(), httpx.Client(base_url=url, timeout=30) as client:
        _too_large(client.post("/v1/decisions", content=raw, headers=headers), BODY_CAP)
        # No Content-Length (chunked): refused while reading, at the cap, not after.
        _too_large(
            client.post("/v1/decisions", content=_chunks(4 * BODY_CAP), headers=headers),
            BODY_CAP,
        )
        # The upload cap is for uploads only: a policy set may not borrow it.
        _too_large(
            client.put(
                "/v1/policies",
                content=_chunks(2 * BODY_CAP),
                headers=scene.headers("steward") | {"content-type": "application/json"},
            ),
            BODY_CAP,
        )


def test_an_upload_over_the_cap_is_refused_and_leaves_no_file(capped: tuple[Scene, str]) -> None:
    scene, url = capped
    rows = b"sid,value\n" + b"".join(b"s%d,%d\n" % (i, i) for i in range(40_000))
    assert len(rows) > UPLOAD_CAP
    body, boundary = _multipart(rows)
    headers = scene.headers("steward") | {
        "content-type": f"multipart/form-data; boundary={boundary}"
    }
    with scene.unchanged(), httpx.Client(base_url=url, timeout=60) as client:
        _too_large(client.post("/v1/datasets", content=body, headers=headers), UPLOAD_CAP)
        # Streamed without a length: the part already written to disk is removed.
        streamed = (body[i : i + 32 * 1024] for i in range(0, len(body), 32 * 1024))
        _too_large(client.post("/v1/datasets", content=streamed, headers=headers), UPLOAD_CAP)
    assert _leftovers(scene) == []


def test_a_forbidden_uploader_writes_nothing(capped: tuple[Scene, str]) -> None:
    scene, url = capped
    body, boundary = _multipart(b"sid,value\n" + b"s1,1\n" * 10_000)
    headers = scene.headers("trainer") | {
        "content-type": f"multipart/form-data; boundary={boundary}"
    }
    with scene.unchanged(), httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/v1/datasets", content=body, headers=headers)
        assert refusal(response, 403)["error"] == "forbidden"
    assert _leftovers(scene) == []


def test_multipart_bombs_are_bad_requests(capped: tuple[Scene, str]) -> None:
    scene, url = capped
    many = {"name": "big", "subject_column": "sid"} | {f"f{i}": "x" for i in range(50)}
    wide = {"name": "big", "subject_column": "sid", "description": "x" * (70 * 1024)}
    with scene.unchanged(), httpx.Client(base_url=url, timeout=60) as client:
        for fields in (many, wide):
            body, boundary = _multipart(b"sid,value\ns1,1\n", fields)
            headers = scene.headers("steward") | {
                "content-type": f"multipart/form-data; boundary={boundary}"
            }
            response = client.post("/v1/datasets", content=body, headers=headers)
            assert refusal(response, 400)["error"] == "bad_request"
            assert "at most" in response.json()["message"]
        # Deep nesting inside the body cap: refused, not a crash. Whether the JSON parser
        # gives up (400) or parses it and the schema refuses it (422) depends on the
        # interpreter's recursion limit, which libraries loaded earlier in a process may raise.
        response = client.post(
            "/v1/decisions",
            content=b"[" * 4000 + b"]" * 4000,
            headers=scene.headers("trainer") | {"content-type": "application/json"},
        )
        status = 400 if response.status_code == 400 else 422
        assert refusal(response, status)["error"] == ("bad_request" if status == 400 else "invalid")
    assert _leftovers(scene) == []


def test_oversized_tickets_and_tokens_are_refused_by_flight(scene: Scene) -> None:
    token = scene.tokens["trainer"]
    fat = {
        "dataset": "patient_notes",
        "purpose": "training",
        "run_id": "r",
        "columns": ["x" * 60] * 1100,
    }
    data = json.dumps(fat).encode()
    assert len(data) > MAX_TICKET_BYTES
    with (
        flight_server(scene.gateway) as server,
        flight.connect(server.location) as client,
        scene.unchanged(),
    ):
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(flight.Ticket(data), flight_options(token)).read_all()
        assert flight_refusal(caught.value)["error"] == "bad_request"
        descriptor = flight.FlightDescriptor.for_command(data)
        with pytest.raises(flight.FlightError) as caught:
            client.get_flight_info(descriptor, flight_options(token))
        assert flight_refusal(caught.value)["error"] == "bad_request"
        with pytest.raises(flight.FlightUnauthenticatedError) as refused:
            client.do_get(flight.Ticket(b"{}"), flight_options("A" * 9000)).read_all()
        assert flight_refusal(refused.value)["error"] == "unauthenticated"
