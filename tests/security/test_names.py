"""Path traversal and look-alike names through every edge that takes a name: each is refused
with a 4xx and a machine-readable reason, changes nothing, and writes no file outside
GOVERN_HOME (nor anywhere named after the attack inside it)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from govern.catalog.names import validate_column_name, validate_dataset_name, validate_tag
from govern.errors import BadRequest, GovernError
from govern.flight import FlightServer
from govern.provenance.store import validate_run_id
from tests.conftest import TEST_ACTOR
from tests.security.scene import Scene, flight_options, flight_refusal, refusal

# What a caller may try instead of a plain name. "escape" marks every one, so a file that any
# of them created is found by name.
HOSTILE = [
    "../escape",
    "../../escape",
    "..",
    ".",
    "/tmp/escape",
    "a/../../escape",
    "..\\escape",
    "escape/",
    "escape\n",  # `$` matches before a final newline: a name check with match() lets it by
    "escape\r\n",
    "escape\x00",
    "%2e%2e%2fescape",
    "\uff45scape",  # fullwidth e: NFKC-folds to 'escape'
    "esc\u202eape",  # a bidi override: reads differently than it compares
    "escape;--",
    "escape'",
    'escape"',
    " escape",
    "",
]
# Every name rule that guards a file path or reaches SQL.
VALIDATORS = [validate_dataset_name, validate_column_name, validate_tag, validate_run_id]


def _csv(subject: str = "sid") -> bytes:
    return f"{subject},value\ns1,1\ns2,2\n".encode()


def _escaped(scene: Scene) -> list[Path]:
    return [p for p in scene.root.rglob("*") if "escape" in p.name.lower()]


@pytest.mark.parametrize("name", HOSTILE)
def test_no_hostile_name_passes_any_name_rule(name: str) -> None:
    for validate in VALIDATORS:
        with pytest.raises(BadRequest):
            validate(name)


@pytest.mark.parametrize("name", ["escape\n", "a\n", "trainer\n"])
def test_a_trailing_newline_is_refused_by_every_name_rule(name: str, scene: Scene) -> None:
    """The hole these tests found: ``re.match`` with ``$`` accepts one final newline, which
    then reached file paths (a dataset folder), principal ids and run ids."""
    for validate in VALIDATORS:
        with pytest.raises(BadRequest):
            validate(name)
    commands = scene.gateway.commands
    with scene.unchanged():
        with pytest.raises(GovernError):
            commands.register_dataset(name, pa.table({"sid": ["s1"], "v": [1]}), "sid", "t")
        with pytest.raises(GovernError):
            commands.put_principal(name, ["trainer"], {}, TEST_ACTOR)
        with pytest.raises(GovernError):
            commands.put_principal("someone", ["trainer"], {name: "x"}, TEST_ACTOR)
    assert _escaped(scene) == []


def test_hostile_dataset_names_in_an_upload_are_refused(scene: Scene) -> None:
    with scene.unchanged():
        for name in HOSTILE:
            response = scene.client.post(
                "/v1/datasets",
                data={"name": name, "subject_column": "sid"},
                files={"file": ("up.csv", _csv(), "text/csv")},
                headers=scene.headers("steward"),
            )
            assert 400 <= response.status_code < 500, (name, response.text)
            assert refusal(response, response.status_code)["error"] in {"bad_request", "invalid"}
    assert _escaped(scene) == []
    assert list(scene.gateway.settings.uploads_dir.glob("*")) == []  # the upload is gone too


def test_hostile_column_names_in_an_upload_are_refused(scene: Scene) -> None:
    columns = ["../escape", "esc ape", 'a"b', "a'b", "dataset", "_row_id", "\uff45scape", "1a"]
    with scene.unchanged():
        for column in columns:
            header = _csv().replace(b"value", f'"{column.replace(chr(34), chr(34) * 2)}"'.encode())
            response = scene.client.post(
                "/v1/datasets",
                data={"name": "uploaded", "subject_column": "sid"},
                files={"file": ("up.csv", header, "text/csv")},
                headers=scene.headers("steward"),
            )
            assert 400 <= response.status_code < 500, (column, response.text)
            assert refusal(response, response.status_code)["error"] in {"bad_request", "invalid"}
    assert list(scene.gateway.settings.uploads_dir.glob("*")) == []


def test_column_names_that_differ_only_in_case_are_refused(scene: Scene) -> None:
    """DuckDB matches identifiers case-insensitively, and names the second of "ssn" and "SSN"
    "SSN_1": a select of "SSN" read "ssn". With "ssn" dropped for trainers by a column rule
    and "SSN" untagged, a trainer read the dropped values by asking for "SSN"."""
    table = pa.table({"sid": ["s1"], "ssn": ["secret"], "SSN": ["public"]})
    with scene.unchanged():
        with pytest.raises(BadRequest):
            scene.gateway.commands.register_dataset(
                "cased", table, "sid", TEST_ACTOR, tags={"ssn": ["pii.ssn"]}
            )
        for header in (b"sid,ssn,SSN", b"sid,Sid", b"sid,ssn,ssn"):
            row = b",".join([b"v"] * (header.count(b",") + 1))
            response = scene.client.post(
                "/v1/datasets",
                data={"name": "cased", "subject_column": "sid"},
                files={"file": ("up.csv", header + b"\n" + row + b"\n", "text/csv")},
                headers=scene.headers("steward"),
            )
            assert 400 <= response.status_code < 500, (header, response.text)
            refusal(response, response.status_code)


def test_the_upload_file_name_never_becomes_a_path(scene: Scene) -> None:
    """The client's file name only says CSV or Parquet: the file lands under a generated name
    in GOVERN_HOME, then in the dataset's own folder."""
    files = scene.files_outside_home()
    response = scene.client.post(
        "/v1/datasets",
        data={"name": "uploaded", "subject_column": "sid"},
        files={"file": ("../../../../escape.csv", _csv(), "text/csv")},
        headers=scene.headers("steward"),
    )
    assert response.status_code == 201, response.text
    assert _escaped(scene) == []
    assert scene.files_outside_home() == files
    assert list(scene.gateway.settings.uploads_dir.glob("*")) == []


def test_hostile_names_in_rest_paths_are_refused(scene: Scene) -> None:
    # Dots alone are a segment the client resolves, and a trailing slash is redirected to the
    # name without it (a different, valid name): neither reaches a route as sent.
    with scene.unchanged():
        for name in [n for n in HOSTILE if n.strip(".") and not n.endswith("/")]:
            _refused_in_rest_paths(scene, name)
    assert _escaped(scene) == []


def _refused_in_rest_paths(scene: Scene, name: str) -> None:
    quoted = quote(name, safe="")
    admin, steward = scene.headers("admin"), scene.headers("steward")
    calls = [
        scene.client.get(f"/v1/datasets/{quoted}", headers=steward),
        scene.client.put(
            f"/v1/datasets/{quoted}/suite", json={"expectations": []}, headers=steward
        ),
        scene.client.put(
            f"/v1/datasets/patient_notes/columns/{quoted}/tags",
            json={"tags": ["pii.id"]},
            headers=steward,
        ),
        scene.client.put(
            "/v1/datasets/patient_notes/columns/age/tags",
            json={"tags": [name]},
            headers=steward,
        ),
        scene.client.put(f"/v1/principals/{quoted}", json={"roles": ["trainer"]}, headers=admin),
        scene.client.put(
            "/v1/principals/someone",
            json={"roles": ["trainer"], "attributes": {name: "x"}},
            headers=admin,
        ),
        scene.client.get(f"/v1/runs/{quoted}", headers=admin),
    ]
    for response in calls:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
        refusal(response, response.status_code)


@pytest.mark.parametrize("name", ["../escape", "escape\n", "/tmp/escape", "..", "a/b"])
def test_hostile_names_in_flight_tickets_are_refused(
    scene: Scene, flight_of: FlightServer, name: str
) -> None:
    token = scene.tokens["trainer"]
    tickets = [
        {"dataset": name, "purpose": "training", "run_id": "sec-run"},
        {"dataset": "patient_notes", "purpose": "training", "run_id": name},
        {"dataset": "patient_notes", "purpose": "training", "run_id": "r", "columns": [name]},
    ]
    with scene.unchanged(), flight.connect(flight_of.location) as client:
        for fields in tickets:
            with pytest.raises(flight.FlightError) as info:
                client.do_get(flight.Ticket(json.dumps(fields).encode()), flight_options(token))
            body = flight_refusal(info.value)
            assert body["error"] in {"bad_request", "dataset_not_found", "not_found", "forbidden"}
            # A refused column is a denial (logged as such); the rest never reach a decision.
    assert _escaped(scene) == []
