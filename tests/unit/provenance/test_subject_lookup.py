"""Which runs read a data subject's rows, checked against an independent computation; and the
REST routes over runs."""

from __future__ import annotations

import duckdb
import pytest
from fastapi.testclient import TestClient
from pyroaring import BitMap

from govern.catalog import ROW_ID
from govern.gateway import Gateway, ReadRequest
from govern.provenance import ProvenanceStore
from tests.conftest import TEST_ACTOR, TokenFactory, auth, raw_store
from tests.unit.flight.serving import load_small_demo


def subject_ids(gateway: Gateway, dataset: str, subject: str) -> BitMap:
    info = gateway.queries.dataset(dataset)
    rows = duckdb.sql(
        f"SELECT {ROW_ID} FROM read_parquet('{info.path}') WHERE {info.subject_column} = ?",
        params=[subject],
    ).fetchall()
    return BitMap(r[0] for r in rows)


@pytest.fixture
def runs(gateway: Gateway) -> dict[str, str]:
    """Real reads: four runs over different datasets and shards. {run id: principal}."""
    load_small_demo(gateway)
    gateway.commands.put_principal("trainer-2", ["trainer"], {"region": "eu"}, TEST_ACTOR)
    made = {}
    plan = [
        ("run-a", "demo-trainer", "patient_notes", None),
        ("run-b", "demo-trainer", "patient_notes", (0, 2)),
        ("run-c", "trainer-2", "patient_notes", (1, 2)),
        ("run-d", "trainer-2", "chat_logs", None),
    ]
    for run_id, who, dataset, shard in plan:
        token = gateway.commands.issue_token(who, "trainer", TEST_ACTOR).token
        caller = gateway.decider.authenticate(token)
        read = gateway.reads.open(
            caller, ReadRequest(dataset, "training", run_id=run_id, shard=shard)
        )
        read.to_reader().read_all()
        made[run_id] = who
    return made


def expected_runs(gateway: Gateway, subject: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for dataset in ("patient_notes", "chat_logs", "code_corpus"):
        info = gateway.queries.dataset(dataset)
        wanted = subject_ids(gateway, dataset, subject)
        for run_id in ("run-a", "run-b", "run-c", "run-d"):
            hit = gateway.queries.run_rows(run_id, info.version_id) & wanted
            if hit:
                out.setdefault(run_id, {})[dataset] = len(hit)
    return out


def test_lookup_finds_exactly_the_runs_that_received_the_subjects_rows(
    gateway: Gateway, runs: dict[str, str]
) -> None:
    notes = gateway.queries.dataset("patient_notes")
    received = gateway.queries.run_rows("run-a", notes.version_id)
    patients = duckdb.sql(
        f"SELECT patient_id, list({ROW_ID}) FROM read_parquet('{notes.path}') GROUP BY 1"
    ).fetchall()
    # A subject with rows in run-a, and one whose rows the row filter kept from every run.
    seen = next(p for p, rows in patients if BitMap(rows) & received)
    unseen = next(p for p, rows in patients if not BitMap(rows) & received)
    for subject in (seen, unseen, "P999999"):
        found = {
            r.run.id: {x.dataset: x.rows for x in r.reads}
            for r in gateway.queries.runs_for_subject(subject)
        }
        assert found == expected_runs(gateway, subject), subject
    hits = gateway.queries.runs_for_subject(seen)
    assert {h.run.id for h in hits} >= {"run-a"}
    assert all(h.run.principal_id == runs[h.run.id] for h in hits)
    assert gateway.queries.runs_for_subject(seen, datasets=["chat_logs"]) == []


def test_lookup_scales_to_many_runs(gateway: Gateway) -> None:
    load_small_demo(gateway)
    notes = gateway.queries.dataset("patient_notes")
    first = duckdb.sql(f"SELECT patient_id FROM read_parquet('{notes.path}') LIMIT 1").fetchall()
    subject = str(first[0][0])
    target = subject_ids(gateway, "patient_notes", subject)
    # 200 runs with chosen bitmaps, planted through the provenance store itself (no read
    # delivers these exact row sets).
    raw = raw_store(gateway)
    try:
        store = ProvenanceStore(raw)
        hit_runs = set()
        for i in range(200):
            run_id = f"bulk-{i:03d}"
            store.open_run(run_id, "demo-trainer", "training")
            rows = BitMap(range(i % 7, notes.row_count, 7))
            store.merge(run_id, notes.version_id, rows)
            if rows & target:
                hit_runs.add(run_id)
    finally:
        raw.dispose()
    assert 0 < len(hit_runs) < 200
    assert {r.run.id for r in gateway.queries.runs_for_subject(subject)} == hit_runs


def test_runs_over_rest(
    client: TestClient, gateway: Gateway, runs: dict[str, str], token_for: TokenFactory
) -> None:
    own = gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
    r = client.get("/v1/runs/run-a", headers=auth(own))
    assert r.status_code == 200, r.text
    body = r.json()
    notes = gateway.queries.dataset("patient_notes")
    count = len(gateway.queries.run_rows("run-a", notes.version_id))
    assert body["principal_id"] == "demo-trainer" and body["purpose"] == "training"
    assert body["reads"] == [{"dataset": "patient_notes", "version": 1, "row_count": count}]
    assert body["row_count"] == count
    # Someone else's run looks like no run at all; reviewers see every run.
    assert client.get("/v1/runs/run-c", headers=auth(own)).status_code == 404
    assert client.get("/v1/runs/nope", headers=auth(own)).json()["error"] == "not_found"
    auditor = token_for("aud", "auditor")
    assert client.get("/v1/runs/run-c", headers=auth(auditor)).status_code == 200
    assert client.get("/v1/runs/run-c").status_code == 401
    # The subject lookup is for reviewers only.
    info = gateway.queries.dataset("chat_logs")
    row_id = gateway.queries.run_rows("run-d", info.version_id).min()
    user = duckdb.sql(
        f"SELECT user_id FROM read_parquet('{info.path}') WHERE {ROW_ID} = ?", params=[row_id]
    ).fetchall()[0][0]
    r = client.get("/v1/runs", params={"subject_id": user}, headers=auth(auditor))
    assert r.status_code == 200, r.text
    assert "run-d" in [x["run_id"] for x in r.json()["runs"]]
    assert client.get("/v1/runs", params={"subject_id": "x"}, headers=auth(own)).status_code == 403
    assert client.get("/v1/runs", headers=auth(auditor)).status_code == 422
