"""Erasure over both stores, end to end: a trainer reads through Flight, a compliance officer
erases one patient, and the very next read no longer contains any of that patient's rows."""

from __future__ import annotations

from collections import Counter

import duckdb
import govern_connect
from fastapi.testclient import TestClient

from govern.events.commitment import Commitments
from govern.gateway import Gateway
from govern.unlearning.erasure import request_id
from tests.conftest import TEST_ACTOR, auth
from tests.unit.flight.serving import flight_server, load_small_demo


def subject_of_rows(gateway: Gateway) -> dict[int, str]:
    info = gateway.queries.dataset("patient_notes")
    rows = duckdb.sql(f"SELECT _row_id, patient_id FROM read_parquet('{info.path}')").fetchall()
    return {int(r): str(p) for r, p in rows}


def test_an_erased_subject_is_never_served_again_and_its_runs_are_found(
    gateway: Gateway, client: TestClient
) -> None:
    load_small_demo(gateway)
    owner = subject_of_rows(gateway)
    trainer = gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
    officer = auth(gateway.commands.issue_token("demo-compliance", "compliance", TEST_ACTOR).token)
    with flight_server(gateway) as server:
        reader = govern_connect.connect(server.location, trainer)
        before = reader.read("patient_notes", purpose="training", run_id="run-a")
        served = Counter(owner[i] for i in before.column("_row_id").to_pylist())
        subject, seen = served.most_common(1)[0]
        everywhere = sum(1 for p in owner.values() if p == subject)

        r = client.post(
            "/v1/erasure-requests",
            json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
            headers=officer,
        )
        assert r.status_code == 202, r.text
        body = r.json()
        # run-a registered no recipe, so there is nothing to retrain: the request is complete
        # at once, and the affected run says why it was left alone.
        assert body["state"] == "completed"
        assert "affected_runs" in body["message"]
        assert body["excluded_rows"] == everywhere
        (run,) = [x for x in body["affected_runs"] if x["run_id"] == "run-a"]
        assert run["reads"] == [{"dataset": "patient_notes", "version": 1, "rows": seen}]
        assert "no recipe" in str(run["unlearning"])

        after = reader.read("patient_notes", purpose="training", run_id="run-b")
        assert subject not in {owner[i] for i in after.column("_row_id").to_pylist()}
        assert after.num_rows == before.num_rows - seen

    again = client.post(
        "/v1/erasure-requests",
        json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
        headers=officer,
    )
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    got = client.get(f"/v1/erasure-requests/{body['id']}", headers=officer).json()
    assert got["excluded_rows"] == everywhere
    # The subject id in clear is kept only until the request completes; the commitment stays.
    commitment = Commitments(gateway.settings.commitment_key_bytes).subject(subject)
    assert body["subject_id"] is None and got["subject_id"] is None
    assert got["subject_commitment"] == body["subject_commitment"] == commitment

    # The log holds the request (once: the second was the same request), its plan (no job
    # needed) and its completion, with the subject as its commitment only, never in clear.
    ref = f"erasure:{body['id']}"
    entries = gateway.queries.ledger_entries(gateway.operator, limit=10_000)
    assert [e.entry["kind"] for e in entries if e.entry["object"] == ref] == [
        "erasure.request",
        "job.enqueue",
        "erasure.complete",
    ]
    request, planned, complete = (e.entry for e in entries if e.entry["object"] == ref)
    assert request["actor"] == planned["actor"] == complete["actor"] == "demo-compliance"
    assert planned["data"]["jobs"] == []
    assert request["data"]["subject_commitment"] == commitment
    assert request["data"]["excluded_rows"] == everywhere
    assert "subject_id" not in request["data"]
    assert complete["data"]["subject_commitment"] == commitment
    assert not any(subject.encode() in e.leaf for e in entries)


def test_unknown_subjects_complete_at_once_and_only_officers_may_erase(
    gateway: Gateway, client: TestClient
) -> None:
    load_small_demo(gateway)
    body = {"subject_id": "nobody-at-all", "datasets": ["chat_logs"], "legal_basis": "ccpa"}
    r = client.post(
        "/v1/erasure-requests",
        json=body,
        headers=auth(gateway.commands.issue_token("demo-admin", "admin", TEST_ACTOR).token),
    )
    assert r.status_code == 202
    assert (r.json()["state"], r.json()["excluded_rows"]) == ("completed", 0)
    # Nothing was found, so the subject id in clear was never kept.
    assert r.json()["subject_id"] is None
    commitment = Commitments(gateway.settings.commitment_key_bytes).subject("nobody-at-all")
    assert r.json()["subject_commitment"] == commitment
    assert r.json()["id"] == request_id(commitment, ["chat_logs"])
    trainer = auth(gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token)
    assert client.post("/v1/erasure-requests", json=body, headers=trainer).status_code == 403
    bad = {**body, "datasets": ["../etc"]}
    r = client.post(
        "/v1/erasure-requests",
        json=bad,
        headers=auth(gateway.commands.issue_token("demo-admin", "admin", TEST_ACTOR).token),
    )
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert client.get("/v1/erasure-requests/er-nope", headers=trainer).status_code == 403
