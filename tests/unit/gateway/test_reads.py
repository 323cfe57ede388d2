"""Gateway reads in process: the Plan's rows, logged before data, recorded as delivered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyroaring import BitMap

from govern.auth import Caller
from govern.catalog import ROW_ID
from govern.engine import Engine
from govern.errors import BadRequest, DatasetNotFound, Forbidden, NotFound, VersionNotFound
from govern.gateway import DecisionRequest, Gateway, ReadRequest
from govern.settings import load_settings
from govern.store.migrate import upgrade
from tests.conftest import TEST_ACTOR
from tests.unit.flight.serving import (
    EVENTS_RULES,
    demo_rules,
    events_table,
    load_events,
    load_small_demo,
)


def caller_for(gateway: Gateway, pid: str, role: str) -> Caller:
    return gateway.decider.authenticate(gateway.commands.issue_token(pid, role, TEST_ACTOR).token)


@pytest.fixture
def trainer(gateway: Gateway) -> Caller:
    load_small_demo(gateway)
    load_events(gateway)
    return caller_for(gateway, "demo-trainer", "trainer")


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = Engine()
    yield e
    e.close()


def ids(table: pa.Table | pa.RecordBatch) -> BitMap:
    return BitMap(table.column(ROW_ID).to_pylist())


def entries(gateway: Gateway, start: int = 0) -> list[tuple[int, dict[str, Any]]]:
    views = gateway.queries.ledger_entries(gateway.operator, start=start, limit=1_000_000)
    return [(v.index, v.entry) for v in views]


def entry(gateway: Gateway, index: int) -> dict[str, Any]:
    return gateway.queries.ledger_entry(gateway.operator, index).entry


def events_version_id(gateway: Gateway) -> int:
    return gateway.queries.dataset("events").version_id


def test_a_complete_read_is_the_plan_logged_first_and_recorded_exactly(
    gateway: Gateway, trainer: Caller, engine: Engine
) -> None:
    read = gateway.reads.open(trainer, ReadRequest("events", "training", run_id="r1"))
    # Before any batch: the decision and the read are in the log, in that order.
    logged = dict(entries(gateway))
    assert logged[read.plan.log_index or -1]["kind"] == "decision"
    assert logged[read.read_index]["kind"] == "read"
    assert read.plan.log_index is not None and read.plan.log_index < read.read_index
    assert logged[read.read_index]["data"]["decision"] == read.plan.log_index
    assert logged[read.read_index]["actor"] == "demo-trainer"
    assert logged[read.read_index]["object"] == "run:r1"
    received = read.to_reader().read_all()
    info = gateway.queries.dataset("events")
    expected = engine.table(info, read.plan)
    assert received.num_rows == expected.num_rows > 0
    assert received.sort_by(ROW_ID).equals(expected.sort_by(ROW_ID))
    assert pc.all(pc.not_equal(received.column("kind"), "bot")).as_py()  # the row filter
    assert gateway.queries.run_rows("r1", info.version_id) == ids(received)
    assert read.state == "complete" and read.rows_sent == received.num_rows
    end = [e for _, e in entries(gateway, read.read_index) if e["kind"] == "read.end"]
    assert end[-1]["data"]["rows"] == received.num_rows
    assert end[-1]["data"]["state"] == "complete"


def test_an_abandoned_read_records_only_the_batches_taken(
    gateway: Gateway, trainer: Caller
) -> None:
    read = gateway.reads.open(trainer, ReadRequest("events", "training", run_id="r2"))
    stream = read.batches()
    first = next(stream)
    second = next(stream)  # asking for the second delivers the first
    stream.close()  # the consumer goes away holding the second, never acknowledged
    version_id = events_version_id(gateway)
    assert gateway.queries.run_rows("r2", version_id) == ids(first)
    assert not ids(second) & gateway.queries.run_rows("r2", version_id)
    assert read.state == "aborted" and read.rows_sent == first.num_rows
    end = [e for _, e in entries(gateway, read.read_index) if e["kind"] == "read.end"][-1]
    assert end["data"] == {
        "read": read.read_index,
        "dataset": "events",
        "version": 1,
        "run_id": "r2",
        "rows": first.num_rows,
        "bytes": first.nbytes,
        "state": "aborted",
    }


def test_reads_of_one_run_merge_and_shards_partition_the_plan(
    gateway: Gateway, trainer: Caller
) -> None:
    parts = [
        gateway.reads.open(trainer, ReadRequest("events", "training", run_id="r3", shard=(i, 3)))
        .to_reader()
        .read_all()
        for i in range(3)
    ]
    sets = [ids(p) for p in parts]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    whole = gateway.reads.open(trainer, ReadRequest("events", "evaluation")).to_reader().read_all()
    allowed = gateway.reads.open(trainer, ReadRequest("events", "training", run_id="r4"))
    full = ids(allowed.to_reader().read_all())
    assert BitMap.union(*sets) == full
    assert len(full) < whole.num_rows  # evaluation has no row filter; training does
    version_id = events_version_id(gateway)
    assert gateway.queries.run_rows("r3", version_id) == full
    # A read without a run (not training) is logged but records no provenance.
    run, reads = gateway.queries.run(gateway.operator, "r3")
    assert (run.id, run.principal_id, run.purpose) == ("r3", "demo-trainer", "training")
    assert [r.run_id for r in reads] == ["r3"]


def test_refusals(gateway: Gateway, trainer: Caller) -> None:
    reads = gateway.reads
    with pytest.raises(BadRequest, match="run id is required"):
        reads.open(trainer, ReadRequest("events", "training"))
    with pytest.raises(BadRequest):
        reads.open(trainer, ReadRequest("events", "training", run_id="bad id"))
    with pytest.raises(BadRequest, match="no column"):
        reads.open(trainer, ReadRequest("events", "training", run_id="r", columns=["nope"]))
    with pytest.raises(BadRequest, match="shard"):
        reads.open(trainer, ReadRequest("events", "training", run_id="r", shard=(3, 3)))
    with pytest.raises(DatasetNotFound):
        reads.open(trainer, ReadRequest("nope", "training", run_id="r"))
    with pytest.raises(VersionNotFound):
        reads.open(trainer, ReadRequest("events", "training", run_id="r", version=9))
    with pytest.raises(Forbidden) as denied:
        reads.open(trainer, ReadRequest("events", "marketing"))
    # The refusal names the logged decision.
    assert entry(gateway, denied.value.details["log_index"])["kind"] == "decision"
    # A run belongs to its principal.
    gateway.commands.put_principal("other-trainer", ["trainer"], {"region": "eu"}, TEST_ACTOR)
    other = caller_for(gateway, "other-trainer", "trainer")
    reads.open(trainer, ReadRequest("events", "training", run_id="mine")).to_reader().read_all()
    with pytest.raises(Forbidden, match="another principal"):
        reads.open(other, ReadRequest("events", "training", run_id="mine"))


def test_a_column_the_plan_drops_cannot_be_asked_for(gateway: Gateway, trainer: Caller) -> None:
    drop = ["p2", "r.sub.role == 'trainer'", "*", "pii.email", "*", "drop"]
    gateway.commands.put_policy(None, demo_rules(*EVENTS_RULES, drop), TEST_ACTOR)
    read = gateway.reads.open(trainer, ReadRequest("chat_logs", "training", run_id="r"))
    assert "email" not in read.schema.names and ROW_ID in read.schema.names
    read.batches().close()
    with pytest.raises(Forbidden, match="drops column") as info:
        gateway.reads.open(
            trainer, ReadRequest("chat_logs", "training", run_id="r", columns=["email", "message"])
        )
    assert info.value.details["columns"] == ["email"]
    # Naming the row id is allowed; it always comes with the rows.
    named = gateway.reads.open(
        trainer, ReadRequest("chat_logs", "training", run_id="r", columns=["message", ROW_ID])
    )
    assert named.schema.names == ["message", ROW_ID]
    named.batches().close()


def test_describe_logs_the_decision_and_streams_nothing(gateway: Gateway, trainer: Caller) -> None:
    start = gateway.queries.log_size()
    described = gateway.reads.describe(trainer, ReadRequest("events", "training", run_id="d1"))
    assert described.info.name == "events" and described.plan.allowed
    assert "kind" in described.schema.names and ROW_ID in described.schema.names
    assert [e["kind"] for _, e in entries(gateway, start)] == ["decision"]
    assert described.plan.log_index == start
    # No run was opened: describing reads no rows.
    with pytest.raises(NotFound):
        gateway.queries.run(gateway.operator, "d1")
    assert not gateway.queries.run_rows("d1", described.info.version_id)


def test_quarantined_versions_are_not_served(
    gateway: Gateway, trainer: Caller, tmp_path: Path
) -> None:
    # A suite the next upload fails (it has bots), so the upload is quarantined.
    suite = {
        "expectations": [
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "kind", "value_set": ["click", "view"]},
            }
        ]
    }
    gateway.commands.put_suite("events", suite, TEST_ACTOR)
    path = tmp_path / "events-v2.parquet"
    pq.write_table(events_table(100), path)
    result = gateway.commands.ingest("events", path, "user_id", TEST_ACTOR)
    assert (result.info.version, result.info.state) == (2, "quarantined")
    with pytest.raises(Forbidden, match="quarantined"):
        gateway.reads.open(trainer, ReadRequest("events", "training", run_id="r", version=2))
    # The newest active version is still version 1.
    plan = gateway.decider.decide(trainer, DecisionRequest("events", "training"))
    assert plan.version == 1


def test_excluded_rows_are_never_served(gateway: Gateway, trainer: Caller) -> None:
    full = ids(
        gateway.reads.open(trainer, ReadRequest("events", "evaluation")).to_reader().read_all()
    )
    # Erasure requests withdraw some subjects' rows from the version.
    subjects = events_table().column("user_id").to_pylist()
    erased = sorted(set(subjects))[::700]
    for subject in erased:
        gateway.commands.request_erasure(subject, ["events"], "gdpr-art17", TEST_ACTOR)
    gone = gateway.queries.excluded_rows(events_version_id(gateway))
    assert gone == {i for i, s in enumerate(subjects) if s in set(erased)}
    assert gone and gone <= set(full)
    read = gateway.reads.open(trainer, ReadRequest("events", "evaluation"))
    assert ids(read.to_reader().read_all()) == full - BitMap(gone)
    assert entry(gateway, read.read_index)["data"]["excluded_rows"] == len(gone)


def test_delivered_rows_are_flushed_while_the_read_is_in_flight(
    tmp_path: Path, database_url: str
) -> None:
    settings = load_settings(
        home=tmp_path / "flush",
        database_url=database_url,
        config=tmp_path / "none.toml",
        provenance_flush_seconds=0.001,
    )
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    try:
        load_events(gateway)
        gateway.commands.put_principal("t", ["trainer"], {}, TEST_ACTOR)
        caller = caller_for(gateway, "t", "trainer")
        read = gateway.reads.open(caller, ReadRequest("events", "training", run_id="live"))
        stream = read.batches()
        first = next(stream)
        next(stream)
        version_id = events_version_id(gateway)
        # Not finished, yet what was delivered is already in the store.
        assert gateway.queries.run_rows("live", version_id) == ids(first)
        stream.close()
    finally:
        gateway.close()
