"""The background rewrite over both stores: erased rows leave the Parquet files, the remaining
rows keep their row ids, reads before, during and after never return an erased row, and the
rewrite is recorded in the catalog, the ledger and the request, idempotently."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import govern_connect
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from govern.gateway import Gateway
from govern.gateway.reads import ReadRequest
from govern.store.models import DatasetVersion
from govern.unlearning import ErasureInfo
from govern.unlearning.rewrite import RewriteState, rewrite_file
from tests.conftest import TEST_ACTOR, auth, raw_store, wait_for
from tests.integration.test_jobs import Factory, make_gateway  # noqa: F401 - fixture
from tests.unit.flight.serving import flight_server, load_events, load_small_demo

Owner = dict[int, str]


def table_of(path: Path, column: str) -> Owner:
    with duckdb.connect() as con:
        rows = con.sql(f"SELECT _row_id, {column} FROM read_parquet('{path}')").fetchall()
    return {int(r): str(v) for r, v in rows}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrites_in_ledger(gateway: Gateway, kind: str = "erasure.rewrite") -> list[dict[str, Any]]:
    views = gateway.queries.ledger_entries(gateway.operator, limit=100_000, kind=kind)
    return [v.entry for v in views]


def token(gateway: Gateway, subject: str, role: str) -> str:
    return gateway.commands.issue_token(subject, role, TEST_ACTOR).token


def erase(gateway: Gateway, subject: str, datasets: list[str] | None) -> ErasureInfo:
    return gateway.commands.request_erasure(subject, datasets, "gdpr-art17", TEST_ACTOR)


def rewrite_state(gateway: Gateway, request_id: str) -> RewriteState:
    return gateway.queries.erasure_request(request_id).rewrite


def version_row(gateway: Gateway, version_id: int) -> DatasetVersion:
    """The catalog's row of a version, read as stored (no query shows the original digest)."""
    db = raw_store(gateway)
    try:
        with db.session() as s:
            row = s.get(DatasetVersion, version_id)
            assert row is not None
            s.expunge(row)
            return row
    finally:
        db.dispose()


def test_the_rewrite_removes_the_subjects_rows_from_the_file_and_keeps_row_ids(
    gateway: Gateway, client: TestClient
) -> None:
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    registered_sha = sha256(info.path)
    owner = table_of(info.path, "patient_id")
    subject, count = Counter(owner.values()).most_common(1)[0]
    trainer = token(gateway, "demo-trainer", "trainer")
    with flight_server(gateway) as server:
        reader = govern_connect.connect(server.location, trainer)
        request = erase(gateway, subject, None)
        excluded = reader.read("patient_notes", purpose="training", run_id="r-before")
        assert rewrite_state(gateway, request.id).state == "pending"

        assert gateway.rewrite_once() == [info.version_id]

        after = reader.read("patient_notes", purpose="training", run_id="r-after")
    # Reads after the rewrite return exactly what the exclusion already returned.
    assert after.sort_by("_row_id").equals(excluded.sort_by("_row_id"))
    # The file itself no longer holds the subject; every other row keeps its row id and values.
    remaining = table_of(info.path, "patient_id")
    assert subject not in remaining.values()
    with duckdb.connect() as con:
        query = f"SELECT count(*) FROM read_parquet('{info.path}') WHERE patient_id = ?"
        assert con.execute(query, [subject]).fetchall() == [(0,)]
    assert remaining == {i: p for i, p in owner.items() if p != subject}
    assert pq.ParquetFile(info.path).metadata.num_rows == len(owner) - count

    rewritten = gateway.queries.dataset("patient_notes")
    assert rewritten.row_count == len(owner) - count
    row = version_row(gateway, info.version_id)
    assert row.sha256 == sha256(info.path) != registered_sha
    assert (row.original_sha256, row.original_row_count) == (registered_sha, len(owner))
    assert row.rewritten_at is not None

    (logged,) = rewrites_in_ledger(gateway)
    assert (logged["actor"], logged["object"]) == ("govern-rewrite", "dataset:patient_notes/v1")
    assert logged["data"] == {
        "dataset": "patient_notes",
        "version": 1,
        "requests": [request.id],
        "rows_before": len(owner),
        "rows_after": len(owner) - count,
        "sha256_before": registered_sha,
        "sha256_after": sha256(info.path),
    }

    officer = auth(token(gateway, "demo-compliance", "compliance"))
    body = client.get(f"/v1/erasure-requests/{request.id}", headers=officer).json()
    assert body["rewrite"] == "done"
    versions = {v["dataset"]: v for v in body["rewrite_versions"]}
    assert versions["patient_notes"]["state"] == "done"
    assert versions["patient_notes"]["rows_excluded"] == count
    assert versions["patient_notes"]["rows_after"] == len(owner) - count
    assert versions["patient_notes"]["sha256_after"] == sha256(info.path)

    # Idempotent: nothing is pending, a second pass rewrites nothing and logs nothing.
    assert gateway.rewrite_once() == []
    assert len(rewrites_in_ledger(gateway)) == 1


def test_runs_that_read_the_subject_are_still_found_after_the_rewrite(
    gateway: Gateway, client: TestClient
) -> None:
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    owner = table_of(info.path, "patient_id")
    trainer = token(gateway, "demo-trainer", "trainer")
    with flight_server(gateway) as server:
        table = govern_connect.connect(server.location, trainer).read(
            "patient_notes", purpose="training", run_id="r-read"
        )
    subject, seen = Counter(owner[i] for i in table.column("_row_id").to_pylist()).most_common(1)[0]
    request = erase(gateway, subject, None)
    assert gateway.rewrite_once() == [info.version_id]
    assert subject not in table_of(info.path, "patient_id").values()

    (run,) = gateway.queries.erasure_request(request.id).affected_runs
    assert run.run.id == "r-read"
    assert [(r.dataset, r.rows) for r in run.reads] == [("patient_notes", seen)]
    officer = auth(token(gateway, "demo-compliance", "compliance"))
    body = client.get(f"/v1/erasure-requests/{request.id}", headers=officer).json()
    assert [r["run_id"] for r in body["affected_runs"]] == ["r-read"]


def test_reads_during_the_rewrite_never_return_an_erased_row(gateway: Gateway) -> None:
    load_small_demo(gateway)
    load_events(gateway)
    info = gateway.queries.dataset("events")
    owner = table_of(info.path, "user_id")
    subject = Counter(owner.values()).most_common(1)[0][0]
    trainer = token(gateway, "demo-trainer", "trainer")
    with flight_server(gateway) as server:
        reader = govern_connect.connect(server.location, trainer)
        request = erase(gateway, subject, ["events"])
        stream = reader.reader("events", purpose="evaluation", run_id="r-during")
        first = stream.read_next_batch()
        gateway.rewrite_once()  # the file is replaced while the read is under way
        ids = first.column("_row_id").to_pylist()
        for batch in stream:
            ids += batch.column("_row_id").to_pylist()
    assert all(owner[i] != subject for i in ids)
    assert sorted(ids) == sorted(i for i, u in owner.items() if u != subject)
    assert rewrite_state(gateway, request.id).state == "done"


def test_one_pass_serves_every_request_on_a_version(gateway: Gateway) -> None:
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    owner = table_of(info.path, "patient_id")
    a, b = [s for s, _ in Counter(owner.values()).most_common(2)]
    ra = erase(gateway, a, ["patient_notes"])
    rb = erase(gateway, b, ["patient_notes"])
    assert gateway.rewrite_once() == [info.version_id]
    assert {rewrite_state(gateway, r.id).state for r in (ra, rb)} == {"done"}
    assert set(table_of(info.path, "patient_id").values()).isdisjoint({a, b})
    (logged,) = rewrites_in_ledger(gateway)
    assert logged["data"]["requests"] == sorted([ra.id, rb.id])


def test_a_rewrite_interrupted_after_the_rename_is_finished_by_the_next_pass(
    gateway: Gateway,
) -> None:
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    registered_sha = sha256(info.path)
    owner = table_of(info.path, "patient_id")
    subject = Counter(owner.values()).most_common(1)[0][0]
    request = erase(gateway, subject, ["patient_notes"])
    # A process renamed the new file into place and died before recording it.
    erased = {i for i, p in owner.items() if p == subject}
    from pyroaring import BitMap

    rewrite_file(info.path, BitMap(erased))
    assert rewrite_state(gateway, request.id).state == "pending"
    assert gateway.rewrite_once() == [info.version_id]
    assert rewrite_state(gateway, request.id).state == "done"
    assert table_of(info.path, "patient_id") == {i: p for i, p in owner.items() if p != subject}
    row = version_row(gateway, info.version_id)
    assert row.original_sha256 == registered_sha
    assert row.sha256 == sha256(info.path)


def test_a_failed_rewrite_says_why_and_reads_stay_excluded(gateway: Gateway) -> None:
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    owner = table_of(info.path, "patient_id")
    subject = Counter(owner.values()).most_common(1)[0][0]
    request = erase(gateway, subject, ["patient_notes"])
    saved = info.path.with_suffix(".saved")
    info.path.rename(saved)  # the file is gone (unmounted, deleted)
    try:
        gateway.rewrite_once()
        state = rewrite_state(gateway, request.id)
        assert state.state == "failed"
        (version,) = state.versions
        assert "rewrite of patient_notes v1 failed" in (version.message or "")
    finally:
        saved.rename(info.path)
    # The next process retries failed rewrites once; the data is back, so it succeeds.
    assert gateway.rewrite_once() == []  # this process already retried it
    (failed,) = rewrites_in_ledger(gateway, "erasure.rewrite_failed")
    assert failed["object"] == "dataset:patient_notes/v1"
    assert failed["data"]["requests"] == [request.id]
    assert "message" not in failed["data"]  # the message stays in the store
    restarted = Gateway.open(gateway.settings)
    try:
        assert restarted.rewrite_once() == [info.version_id]
    finally:
        restarted.close()
    assert rewrite_state(gateway, request.id).state == "done"


def test_a_serving_gateway_rewrites_in_the_background(make_gateway: Factory) -> None:  # noqa: F811
    gateway = make_gateway()
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    subject = Counter(table_of(info.path, "patient_id").values()).most_common(1)[0][0]
    request = erase(gateway, subject, None)
    wait_for(lambda: rewrite_state(gateway, request.id).state == "done", 30)
    assert subject not in table_of(info.path, "patient_id").values()


def test_the_rewrite_deletes_the_hashes_kept_from_the_old_file(gateway: Gateway) -> None:
    load_small_demo(gateway)
    info = gateway.queries.dataset("patient_notes")
    subject = Counter(table_of(info.path, "patient_id").values()).most_common(1)[0][0]
    trainer = gateway.decider.authenticate(token(gateway, "demo-trainer", "trainer"))
    runs = iter(range(1, 100))

    def read() -> pa.Table:
        req = ReadRequest("patient_notes", "training", run_id=f"kept-{next(runs)}")
        return gateway.reads.open(trainer, req).to_reader().read_all().sort_by("_row_id")

    def kept() -> set[str]:
        values: set[str] = set()
        for f in gateway.settings.masks_dir.rglob("*.parquet"):
            values |= {str(v) for v in pq.read_table(f).column("v").to_pylist()}
        return values

    before = read()  # the trainer sees patient_id hashed: its hashes are kept after this read
    wait_for(lambda: bool(kept()), 30)
    with duckdb.connect() as con:
        (hashed,) = con.execute("SELECT sha256(? || ?)", [info.mask_salt, subject]).fetchone()
    assert hashed in kept()

    erase(gateway, subject, None)
    assert gateway.rewrite_once() == [info.version_id]
    # The kept values of the old file, the erased subject's hash among them, are gone.
    assert kept() == set()
    after = read()
    wait_for(lambda: bool(kept()), 30)
    assert hashed not in kept()
    # Reads still give every remaining row the same hash as before.
    assert after.equals(before.filter(pc.is_in(before["_row_id"], after["_row_id"])))
