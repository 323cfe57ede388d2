"""Dataset ingestion over REST, on SQLite and PostgreSQL: upload, quality, accept, suites, tags."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from govern.gateway import Gateway
from govern.gateway.queries import LedgerEntryView
from tests.conftest import TEST_ACTOR, TokenFactory, auth
from tests.unit.flight.serving import demo_rules
from tests.unit.quality.planted import measurements, with_column


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def entries(gateway: Gateway, kind: str) -> list[LedgerEntryView]:
    return gateway.queries.ledger_entries(gateway.operator, kind=kind, limit=10_000)


def upload(
    client: TestClient,
    token: str,
    name: str,
    data: bytes,
    subject: str = "patient_id",
    filename: str = "up.parquet",
    **extra: str,
) -> Any:
    return client.post(
        "/v1/datasets",
        headers=auth(token),
        data={"name": name, "subject_column": subject, **extra},
        files={"file": (filename, data, "application/octet-stream")},
    )


@pytest.fixture
def steward(token_for: TokenFactory) -> str:
    return token_for("st", "steward")


def test_upload_returns_the_version_its_validation_and_proposed_tags(
    client: TestClient, steward: str, gateway: Gateway
) -> None:
    t = measurements(300).append_column("email", pa.array([f"p{i}@ex.org" for i in range(300)]))
    r = upload(client, steward, "vitals", parquet_bytes(t), unique_columns="reading_id")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["name"], body["version"], body["state"], body["row_count"]) == (
        "vitals",
        1,
        "active",
        300,
    )
    assert body["validation"]["success"] is True and body["suite_inferred"] is True
    assert {"column": "email", "tag": "pii.email"}.items() <= next(
        p for p in body["proposed_tags"] if p["column"] == "email"
    ).items()
    email = next(c for c in body["columns"] if c["name"] == "email")
    assert email["tags"] == ["pii.email"]
    assert email["tag_details"][0]["confirmed"] is False
    # GET /v1/datasets keeps its fixed shape and now shows the dataset.
    listed = client.get("/v1/datasets", headers=auth(steward)).json()
    assert [d["name"] for d in listed] == ["vitals"]
    q = client.get("/v1/datasets/vitals/versions/1/quality", headers=auth(steward)).json()
    assert q["success"] is True and q["result"]["evaluated"] >= 5
    suite = client.get("/v1/datasets/vitals/suite", headers=auth(steward)).json()
    assert suite["inferred"] is True
    assert {"type": "expect_column_values_to_be_unique", "column": "reading_id"} in [
        {"type": e["type"], "column": e["kwargs"].get("column")} for e in suite["expectations"]
    ]
    # Nothing of the upload stays behind.
    uploads = gateway.settings.uploads_dir
    assert not any(uploads.iterdir())


def test_a_quarantined_version_waits_for_acceptance_and_both_are_logged(
    client: TestClient, steward: str, token_for: TokenFactory, gateway: Gateway
) -> None:
    trainer = token_for("tr", "trainer", region="eu")
    rule = ["p", "r.sub.role == 'trainer'", "vitals", "read", "training", "True", "allow"]
    gateway.commands.put_policy(None, demo_rules(rule), TEST_ACTOR)
    assert upload(client, steward, "vitals", parquet_bytes(measurements())).status_code == 201
    t = measurements()
    ids = t.column("reading_id").to_pylist()
    ids[1] = ids[0]
    r = upload(client, steward, "vitals", parquet_bytes(with_column(t, "reading_id", ids)))
    assert r.status_code == 201 and r.json()["state"] == "quarantined"
    failed = [x for x in r.json()["validation"]["results"] if not x["success"]]
    assert [(x["type"], x["unexpected_row_ids"]) for x in failed] == [
        ("expect_column_values_to_be_unique", [0, 1])
    ]
    decide = {
        "action": "read",
        "resource": {"dataset": "vitals"},
        "context": {"purpose": "training"},
    }
    plan = client.post("/v1/decisions", headers=auth(trainer), json=decide).json()
    assert plan["decision"] == "allow"
    quality = [e.entry for e in entries(gateway, "dataset.quality")]
    assert [e["data"]["success"] for e in quality] == [True, False]
    assert [e["object"] for e in quality] == ["dataset:vitals/v1", "dataset:vitals/v2"]
    # Each version was committed straight into its state, with no pending step.
    added = [e.entry["data"] for e in entries(gateway, "dataset.version")]
    assert [(d["version"], d["state"]) for d in added] == [(1, "active"), (2, "quarantined")]
    assert (
        client.post("/v1/datasets/vitals/versions/2/accept", headers=auth(trainer)).status_code
        == 403
    )
    r = client.post("/v1/datasets/vitals/versions/2/accept", headers=auth(steward))
    assert r.status_code == 200 and r.json()["state"] == "active"
    (accepted,) = [e.entry for e in entries(gateway, "dataset.accept")]
    assert (accepted["actor"], accepted["object"]) == ("st", "dataset:vitals/v2")
    assert client.get("/v1/datasets/vitals", headers=auth(trainer)).json()["version"] == 2
    again = client.post("/v1/datasets/vitals/versions/2/accept", headers=auth(steward))
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    q = client.get("/v1/datasets/vitals/versions/2/quality", headers=auth(steward)).json()
    assert q["accepted_by"] == "st" and q["success"] is False


def test_stewards_edit_suites_and_tags_and_others_may_not(
    client: TestClient, steward: str, token_for: TokenFactory
) -> None:
    trainer = token_for("tr", "trainer")
    assert upload(client, steward, "vitals", parquet_bytes(measurements())).status_code == 201
    suite = {
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "ward"}}
        ]
    }
    assert (
        client.put("/v1/datasets/vitals/suite", headers=auth(trainer), json=suite).status_code
        == 403
    )
    r = client.put("/v1/datasets/vitals/suite", headers=auth(steward), json=suite)
    assert r.status_code == 200 and r.json()["inferred"] is False
    bad = {"expectations": [{"type": "expect_nothing", "kwargs": {}}]}
    r = client.put("/v1/datasets/vitals/suite", headers=auth(steward), json=bad)
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    tags = {"tags": ["pii.quasi", "health"]}
    r = client.put("/v1/datasets/vitals/columns/heart_rate/tags", headers=auth(steward), json=tags)
    assert r.status_code == 200
    col = next(c for c in r.json()["columns"] if c["name"] == "heart_rate")
    assert col["tags"] == ["health", "pii.quasi"]
    assert all(t["confirmed"] and t["source"] == "steward" for t in col["tag_details"])
    r = client.put("/v1/datasets/vitals/columns/nope/tags", headers=auth(steward), json=tags)
    assert r.status_code == 400
    r = client.put(
        "/v1/datasets/vitals/columns/ward/tags", headers=auth(steward), json={"tags": ["Bad Tag"]}
    )
    assert r.status_code == 400


def test_bad_uploads_are_clear_4xx_and_leave_nothing(
    client: TestClient, steward: str, token_for: TokenFactory, gateway: Gateway
) -> None:
    good = parquet_bytes(measurements())
    cases = [
        (upload(client, steward, "../x", good), 400, "dataset names"),
        (upload(client, steward, "vitals", good, subject="nobody"), 400, "subject column"),
        (upload(client, steward, "vitals", b"PAR1" + bytes(64) + b"PAR1"), 400, "Parquet"),
        (upload(client, steward, "vitals", b"a,a\n1,2\n", "a", "x.csv"), 400, "more than once"),
        (upload(client, token_for("tr", "trainer"), "vitals", good), 403, "may not"),
    ]
    for r, status, message in cases:
        assert r.status_code == status, r.text
        assert message in r.json()["message"]
        assert set(r.json()) == {"error", "message", "details"}
    r = client.post(
        "/v1/datasets", headers=auth(steward), data={"name": "vitals", "subject_column": "x"}
    )
    assert r.status_code == 400 and "file" in r.json()["message"]
    r = client.post("/v1/datasets", headers=auth(steward), json={"name": "vitals"})
    assert r.status_code == 400 and "multipart" in r.json()["message"]
    assert client.get("/v1/datasets/vitals", headers=auth(steward)).status_code == 404
    assert gateway.queries.datasets() == []
    assert not any(gateway.settings.uploads_dir.iterdir())
    assert not [p for p in gateway.settings.datasets_dir.rglob("*") if p.is_file()]
