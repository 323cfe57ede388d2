"""Gateway.read in process: the Plan's rows, logged before data, recorded as delivered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyroaring import BitMap

from govern.auth import Caller
from govern.catalog import ROW_ID
from govern.errors import BadRequest, DatasetNotFound, Forbidden, VersionNotFound
from govern.gateway import DecisionRequest, Gateway
from govern.provenance import ReadRequest
from govern.settings import load_settings
from govern.store.migrate import upgrade
from tests.unit.flight.serving import EVENTS_RULES, demo_rules, load_events, load_small_demo


@pytest.fixture
def trainer(gateway: Gateway) -> Caller:
    load_small_demo(gateway)
    load_events(gateway)
    return gateway.tokens.verify(gateway.tokens.issue("demo-trainer", "trainer"))


def ids(table: pa.Table | pa.RecordBatch) -> BitMap:
    return BitMap(table.column(ROW_ID).to_pylist())


def entries(gateway: Gateway, start: int = 0) -> list[tuple[int, dict[str, Any]]]:
    return [(i, gateway.ledger.entry(i)[0]) for i in range(start, gateway.ledger.size)]


def test_a_complete_read_is_the_plan_logged_first_and_recorded_exactly(
    gateway: Gateway, trainer: Caller
) -> None:
    read = gateway.read(trainer, ReadRequest("events", "training", run_id="r1"))
    # Before any batch: the decision and the read are in the log, in that order.
    logged = dict(entries(gateway))
    assert logged[read.plan.log_index or -1]["kind"] == "decision"
    assert logged[read.read_index]["kind"] == "read"
    assert read.plan.log_index is not None and read.plan.log_index < read.read_index
    assert logged[read.read_index]["data"]["decision"] == read.plan.log_index
    received = read.to_reader().read_all()
    info = gateway.catalog.get("events")
    expected = gateway.engine.table(info, read.plan)
    assert received.num_rows == expected.num_rows > 0
    assert received.sort_by(ROW_ID).equals(expected.sort_by(ROW_ID))
    assert pc.all(pc.not_equal(received.column("kind"), "bot")).as_py()  # the row filter
    assert gateway.provenance.row_ids("r1", info.version_id) == ids(received)
    assert read.state == "complete" and read.rows_sent == received.num_rows
    end = [e for _, e in entries(gateway, read.read_index) if e["kind"] == "read.end"]
    assert end[-1]["data"]["rows"] == received.num_rows
    assert end[-1]["data"]["state"] == "complete"


def test_an_abandoned_read_records_only_the_batches_taken(
    gateway: Gateway, trainer: Caller
) -> None:
    read = gateway.read(trainer, ReadRequest("events", "training", run_id="r2"))
    stream = read.batches()
    first = next(stream)
    second = next(stream)  # asking for the second delivers the first
    stream.close()  # the consumer goes away holding the second, never acknowledged
    version_id = gateway.catalog.get("events").version_id
    assert gateway.provenance.row_ids("r2", version_id) == ids(first)
    assert not ids(second) & gateway.provenance.row_ids("r2", version_id)
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
        gateway.read(trainer, ReadRequest("events", "training", run_id="r3", shard=(i, 3)))
        .to_reader()
        .read_all()
        for i in range(3)
    ]
    sets = [ids(p) for p in parts]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    whole = gateway.read(trainer, ReadRequest("events", "evaluation")).to_reader().read_all()
    allowed = gateway.read(trainer, ReadRequest("events", "training", run_id="r4"))
    full = ids(allowed.to_reader().read_all())
    assert BitMap.union(*sets) == full
    assert len(full) < whole.num_rows  # evaluation has no row filter; training does
    version_id = gateway.catalog.get("events").version_id
    assert gateway.provenance.row_ids("r3", version_id) == full
    # A read without a run (not training) is logged but records no provenance.
    assert [r.run_id for r in gateway.provenance.reads("r3")] == ["r3"]


def test_refusals(gateway: Gateway, trainer: Caller) -> None:
    with pytest.raises(BadRequest, match="run id is required"):
        gateway.read(trainer, ReadRequest("events", "training"))
    with pytest.raises(BadRequest):
        gateway.read(trainer, ReadRequest("events", "training", run_id="bad id"))
    with pytest.raises(BadRequest, match="no column"):
        gateway.read(trainer, ReadRequest("events", "training", run_id="r", columns=["nope"]))
    with pytest.raises(BadRequest, match="shard"):
        gateway.read(trainer, ReadRequest("events", "training", run_id="r", shard=(3, 3)))
    with pytest.raises(DatasetNotFound):
        gateway.read(trainer, ReadRequest("nope", "training", run_id="r"))
    with pytest.raises(VersionNotFound):
        gateway.read(trainer, ReadRequest("events", "training", run_id="r", version=9))
    with pytest.raises(Forbidden) as denied:
        gateway.read(trainer, ReadRequest("events", "marketing"))
    # The refusal names the logged decision.
    assert gateway.ledger.entry(denied.value.details["log_index"])[0]["kind"] == "decision"
    # A run belongs to its principal.
    gateway.principals.upsert("other-trainer", ["trainer"], {"region": "eu"})
    other = gateway.tokens.verify(gateway.tokens.issue("other-trainer", "trainer"))
    gateway.read(trainer, ReadRequest("events", "training", run_id="mine")).to_reader().read_all()
    with pytest.raises(Forbidden, match="another principal"):
        gateway.read(other, ReadRequest("events", "training", run_id="mine"))


def test_a_column_the_plan_drops_cannot_be_asked_for(gateway: Gateway, trainer: Caller) -> None:
    drop = ["p2", "r.sub.role == 'trainer'", "*", "pii.email", "*", "drop"]
    gateway.put_policy(None, demo_rules(*EVENTS_RULES, drop), "test")
    read = gateway.read(trainer, ReadRequest("chat_logs", "training", run_id="r"))
    assert "email" not in read.schema.names and ROW_ID in read.schema.names
    read.batches().close()
    with pytest.raises(Forbidden, match="drops column") as info:
        gateway.read(
            trainer, ReadRequest("chat_logs", "training", run_id="r", columns=["email", "message"])
        )
    assert info.value.details["columns"] == ["email"]
    # Naming the row id is allowed; it always comes with the rows.
    named = gateway.read(
        trainer, ReadRequest("chat_logs", "training", run_id="r", columns=["message", ROW_ID])
    )
    assert named.schema.names == ["message", ROW_ID]
    named.batches().close()


def test_quarantined_versions_are_not_served(gateway: Gateway, trainer: Caller) -> None:
    from tests.unit.flight.serving import events_table

    gateway.catalog.register_version("events", events_table(100), "user_id", state="quarantined")
    with pytest.raises(Forbidden, match="quarantined"):
        gateway.read(trainer, ReadRequest("events", "training", run_id="r", version=2))
    # The newest active version is still version 1.
    plan = gateway.decide(trainer, DecisionRequest("events", "training"))
    assert plan.version == 1


def test_excluded_rows_are_never_served(
    gateway: Gateway, trainer: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = ids(gateway.read(trainer, ReadRequest("events", "evaluation")).to_reader().read_all())
    gone = frozenset(list(full)[::7])
    # The hook erasure will fill: row ids of a version never to be served again.
    monkeypatch.setattr(gateway, "excluded_rows", lambda info: gone)
    read = gateway.read(trainer, ReadRequest("events", "evaluation"))
    assert ids(read.to_reader().read_all()) == full - BitMap(gone)
    assert gateway.ledger.entry(read.read_index)[0]["data"]["excluded_rows"] == len(gone)


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
        gateway.principals.upsert("t", ["trainer"], {})
        caller = gateway.tokens.verify(gateway.tokens.issue("t", "trainer"))
        read = gateway.read(caller, ReadRequest("events", "training", run_id="live"))
        stream = read.batches()
        first = next(stream)
        next(stream)
        version_id = gateway.catalog.get("events").version_id
        # Not finished, yet what was delivered is already in the store.
        assert gateway.provenance.row_ids("live", version_id) == ids(first)
        stream.close()
    finally:
        gateway.close()
