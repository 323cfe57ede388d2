"""The ingest command over a real store: versions, quality gates, proposed tags, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from govern.auth import Caller
from govern.catalog import ROW_ID
from govern.catalog.upload import CSV_BLOCK_BYTES
from govern.errors import BadRequest, Conflict, DatasetNotFound, GovernError
from govern.gateway import DecisionRequest, Gateway
from govern.store.models import ColumnTag, DatasetVersion, QualityResult, QualitySuite
from tests.conftest import TEST_ACTOR, raw_store
from tests.unit.flight.serving import demo_rules
from tests.unit.quality.planted import measurements, with_column


def parquet(tmp_path: Path, table: pa.Table, name: str = "up.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def csv(tmp_path: Path, table: pa.Table, name: str = "up.csv") -> Path:
    path = tmp_path / name
    pacsv.write_csv(table, path)
    return path


def entries(gateway: Gateway, start: int = 0) -> list[dict[str, Any]]:
    views = gateway.queries.ledger_entries(gateway.operator, start=start, limit=100_000)
    return [v.entry for v in views]


def kinds(gateway: Gateway, start: int = 0) -> list[str]:
    return [e["kind"] for e in entries(gateway, start)]


def trainer(gateway: Gateway) -> Caller:
    gateway.commands.put_principal("t1", ["trainer"], {"region": "eu"}, TEST_ACTOR)
    return gateway.decider.authenticate(
        gateway.commands.issue_token("t1", "trainer", TEST_ACTOR).token
    )


def allow_trainers(gateway: Gateway, dataset: str) -> None:
    rule = ["p", "r.sub.role == 'trainer'", dataset, "read", "training", "True", "allow"]
    gateway.commands.put_policy(None, demo_rules(rule), TEST_ACTOR)


def count(gateway: Gateway, model: Any, *where: Any) -> int:
    """Rows of a table, read on an unguarded handle (no query lists every dataset's rows)."""
    db = raw_store(gateway)
    try:
        with db.session() as s:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)
    finally:
        db.dispose()


def nothing_left(gateway: Gateway) -> None:
    """No version row, no version file, no staged or uploaded file, no event."""
    assert count(gateway, DatasetVersion) == 0
    assert count(gateway, QualityResult) == 0
    assert not {"dataset.version", "dataset.quality"} & set(kinds(gateway))
    home = gateway.settings.home
    for folder in (home / "datasets", home / "uploads"):
        assert not [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else True


def test_each_upload_is_an_immutable_version_with_row_ids_logged_with_its_quality(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    start = g.queries.log_size()
    r1 = g.commands.ingest("vitals", parquet(tmp_path, measurements(1000)), "patient_id", "steward")
    r2 = g.commands.ingest(
        "vitals", csv(tmp_path, measurements(500, seed=5)), "patient_id", "steward"
    )
    assert (r1.info.version, r2.info.version) == (1, 2)
    assert (r1.format, r2.format) == ("parquet", "csv")
    assert r1.suite_inferred and not r2.suite_inferred
    assert r1.report.success and r2.report.success, r2.report.failed
    assert (r1.info.state, r2.info.state) == ("active", "active")
    assert g.queries.dataset("vitals").version == 2
    for r, n in ((r1, 1000), (r2, 500)):
        got = duckdb.sql(f"SELECT {ROW_ID} FROM read_parquet('{r.info.path}') ORDER BY 1")
        assert [x[0] for x in got.fetchall()] == list(range(n))
    assert r1.info.path.exists() and r1.info.path != r2.info.path
    assert kinds(g, start) == ["dataset.version", "dataset.quality"] * 2
    logged = entries(g, start)[1]["data"]
    assert logged["success"] is True and logged["dataset"] == "vitals"


def test_a_failing_version_is_quarantined_not_served_until_a_steward_accepts_it(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    allow_trainers(g, "vitals")
    g.commands.ingest("vitals", parquet(tmp_path, measurements()), "patient_id", "steward")
    t = measurements()
    rate = t.column("heart_rate").to_pylist()
    rate[3] = 10_000
    bad = g.commands.ingest(
        "vitals", parquet(tmp_path, with_column(t, "heart_rate", rate)), "patient_id", "s"
    )
    assert bad.info.state == "quarantined" and not bad.report.success
    assert g.queries.dataset("vitals").version == 1  # reads and decisions use v1
    caller = trainer(g)
    assert g.decider.decide(caller, DecisionRequest("vitals", "training")).version == 1
    pinned = g.decider.decide(caller, DecisionRequest("vitals", "training", version=2))
    assert pinned.decision == "deny" and "quarantined" in pinned.reasons[0]
    assert g.queries.quality_result("vitals", 2).result["failed"] == 1
    start = g.queries.log_size()
    assert g.commands.accept_version("vitals", 2, "steward").state == "active"
    assert kinds(g, start) == ["dataset.accept"]
    assert g.queries.dataset("vitals").version == 2
    assert g.queries.quality_result("vitals", 2).accepted_by == "steward"
    with pytest.raises(Conflict):
        g.commands.accept_version("vitals", 2, "steward")


def test_a_first_version_with_null_subjects_leaves_nothing_to_serve(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    allow_trainers(g, "vitals")
    t = measurements()
    subjects = t.column("patient_id").to_pylist()
    subjects[0] = None
    r = g.commands.ingest(
        "vitals", parquet(tmp_path, with_column(t, "patient_id", subjects)), "patient_id", "s"
    )
    assert r.info.state == "quarantined"
    plan = g.decider.decide(trainer(g), DecisionRequest("vitals", "training"))
    assert plan.decision == "deny"
    assert g.queries.datasets() == []


def test_proposed_tags_apply_to_policies_at_once_and_a_stewards_edit_sticks(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    allow_trainers(g, "contacts")  # the demo's column rules hash pii.email and pii.id
    t = pa.table(
        {
            "uid": [f"u{i}" for i in range(200)],
            "reach": [f"person{i}@example.net" for i in range(200)],
            "score": list(range(200)),
        }
    )
    r = g.commands.ingest("contacts", parquet(tmp_path, t), "uid", "steward")
    assert {(p.column, p.tag) for p in r.proposals} == {("uid", "pii.id"), ("reach", "pii.email")}
    details = g.queries.dataset("contacts").column("reach").tag_details
    assert [(d.tag, d.source, d.confirmed) for d in details] == [("pii.email", "detector", False)]
    caller = trainer(g)
    # Unconfirmed proposals are enforced (fail closed): nobody wrote a rule for 'reach'.
    plan = g.decider.decide(caller, DecisionRequest("contacts", "training"))
    assert plan.columns["reach"] == "hash" and plan.columns["score"] == "pass"
    # The steward says 'reach' is not personal; the detector does not re-propose it later.
    g.commands.set_tags("contacts", "reach", [], "steward")
    assert (
        g.decider.decide(caller, DecisionRequest("contacts", "training")).columns["reach"] == "pass"
    )
    g.commands.ingest("contacts", parquet(tmp_path, t, "v2.parquet"), "uid", "s")
    assert g.queries.dataset("contacts").column("reach").tags == ()
    # Confirming keeps the tag and marks it confirmed.
    info = g.commands.set_tags("contacts", "uid", ["pii.id"], "steward")
    assert [(d.tag, d.confirmed) for d in info.column("uid").tag_details] == [("pii.id", True)]
    db = raw_store(g)
    try:
        with db.session() as s:
            rejected = s.scalars(select(ColumnTag).where(ColumnTag.rejected.is_(True))).all()
            assert [(t.column_name, t.tag) for t in rejected] == [("reach", "pii.email")]
    finally:
        db.dispose()


def _corrupt_parquet(tmp_path: Path) -> Path:
    good = parquet(tmp_path, measurements(5000), "good.parquet").read_bytes()
    path = tmp_path / "corrupt.parquet"
    # Keep the magic bytes and footer; scramble the data pages in between.
    path.write_bytes(good[:200] + bytes(len(good) - 400) + good[-200:])
    return path


def _truncated_parquet(tmp_path: Path) -> Path:
    good = parquet(tmp_path, measurements(5000), "good.parquet").read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(good[: len(good) // 2])
    return path


def _mixed_csv(tmp_path: Path) -> Path:
    # Types come from the first block; a value far past it that does not fit is an error.
    path = tmp_path / "mixed.csv"
    line = "reading_id,patient_id,heart_rate,temperature,ward\n"
    body = "".join(f"{i},P{i % 9:04d},70,36.6,a\n" for i in range(CSV_BLOCK_BYTES // 20))
    path.write_text(line + body + "99999999,P0001,unknown,36.6,a\n")
    return path


def _duplicate_columns(tmp_path: Path) -> Path:
    path = tmp_path / "dupes.csv"
    path.write_text("uid,age,age\nu1,3,4\n")
    return path


def _binary(tmp_path: Path) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(100))
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "name", "subject", "message"),
    [
        (_corrupt_parquet, "vitals", "patient_id", "Parquet"),
        (_truncated_parquet, "vitals", "patient_id", "Parquet"),
        (_mixed_csv, "vitals", "patient_id", "does not fit"),
        (_duplicate_columns, "vitals", "uid", "more than once"),
        (_binary, "vitals", "patient_id", "neither Parquet nor CSV"),
        (_empty, "vitals", "patient_id", "empty"),
        (lambda p: csv(p, measurements()), "vitals", "user_id", "subject column"),
        (lambda p: csv(p, measurements()), "../etc", "patient_id", "dataset names"),
        (lambda p: csv(p, measurements()), "Vitals", "patient_id", "dataset names"),
        (lambda p: csv(p, measurements()), "a/b", "patient_id", "dataset names"),
    ],
)
def test_bad_input_is_a_clear_error_and_registers_nothing(
    sqlite_gateway: Gateway, tmp_path: Path, make: Any, name: str, subject: str, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        sqlite_gateway.commands.ingest(name, make(tmp_path), subject, "steward")
    nothing_left(sqlite_gateway)
    with pytest.raises(GovernError):
        sqlite_gateway.queries.dataset("vitals")


def test_a_new_version_must_keep_the_subject_column_and_the_csv_types(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    g.commands.ingest("vitals", parquet(tmp_path, measurements()), "patient_id", "steward")
    with pytest.raises(Conflict, match="same subject column"):
        g.commands.ingest(
            "vitals", parquet(tmp_path, measurements(), "b.parquet"), "ward", "steward"
        )
    path = tmp_path / "v2.csv"
    path.write_text(
        "reading_id,patient_id,heart_rate,temperature,ward\n1,P1,70,36.6,a\n2,P2,unknown,36.6,b\n"
    )
    with pytest.raises(BadRequest, match="does not fit"):
        g.commands.ingest("vitals", path, "patient_id", "steward")
    assert [v.version for v in g.queries.versions("vitals")] == [1]
    assert sorted(p.name for p in (g.settings.datasets_dir / "vitals").iterdir()) == ["v1.parquet"]


def test_a_wrong_type_in_a_parquet_version_is_caught_by_the_suite(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    g.commands.ingest("vitals", parquet(tmp_path, measurements()), "patient_id", "steward")
    t = measurements()
    t = with_column(t, "heart_rate", [str(v) for v in t.column("heart_rate").to_pylist()])
    r = g.commands.ingest("vitals", parquet(tmp_path, t, "b.parquet"), "patient_id", "steward")
    assert r.info.state == "quarantined"
    assert ("expect_column_values_to_be_in_type_list", "heart_rate") in {
        (f["type"], f["kwargs"].get("column")) for f in r.report.failed
    }


def test_a_stewards_suite_applies_to_the_next_version(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    g.commands.ingest("vitals", parquet(tmp_path, measurements()), "patient_id", "steward")
    suite = {
        "expectations": [
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "ward", "value_set": ["a", "b"]},
            }
        ]
    }
    start = g.queries.log_size()
    info = g.commands.put_suite("vitals", suite, "steward")
    assert not info.inferred and kinds(g, start) == ["dataset.suite"]
    r = g.commands.ingest(
        "vitals", parquet(tmp_path, measurements(), "b.parquet"), "patient_id", "s"
    )
    assert r.info.state == "quarantined"  # ward 'c' is now out of the set
    assert count(g, QualitySuite) == 1
    with pytest.raises(DatasetNotFound):
        g.commands.put_suite("nope", suite, "steward")


def test_an_earlier_erasure_request_holds_for_a_version_uploaded_later(
    sqlite_gateway: Gateway, tmp_path: Path
) -> None:
    g = sqlite_gateway
    g.commands.ingest("vitals", parquet(tmp_path, measurements()), "patient_id", "steward")
    g.commands.request_erasure("P0007", ["vitals"], "gdpr-art17", "compliance")
    t = measurements(800, seed=9)
    r = g.commands.ingest("vitals", parquet(tmp_path, t, "v2.parquet"), "patient_id", "steward")
    planted = {i for i, p in enumerate(t.column("patient_id").to_pylist()) if p == "P0007"}
    assert planted and g.queries.excluded_rows(r.info.version_id) == planted
    assert [e["data"]["erased_rows"] for e in entries(g) if e["kind"] == "dataset.version"] == [
        0,
        len(planted),
    ]
