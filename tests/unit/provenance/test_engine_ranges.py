"""The engine's parallel reads of big versions: row-group ranges read at once, yielded in
order, identical to the serial stream."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyroaring import BitMap

import govern.engine.runner as runner
from govern.auth import Caller
from govern.catalog import ROW_ID, DatasetInfo
from govern.engine import Engine
from govern.gateway import DecisionRequest, Gateway
from govern.plan import Plan
from govern.unlearning.rewrite import rewrite_file
from tests.conftest import TEST_ACTOR
from tests.unit.flight.serving import load_events


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # One row group per range, so the test data (five row groups) makes five ranges.
    monkeypatch.setattr(runner, "_RANGE_BYTES", 1)
    runner._ranges_of.cache_clear()
    yield
    runner._ranges_of.cache_clear()


@pytest.fixture
def events(sqlite_gateway: Gateway) -> tuple[DatasetInfo, Plan]:
    load_events(sqlite_gateway)
    sqlite_gateway.commands.put_principal("t", ["trainer"], {}, TEST_ACTOR)
    token = sqlite_gateway.commands.issue_token("t", "trainer", TEST_ACTOR).token
    caller: Caller = sqlite_gateway.decider.authenticate(token)
    plan = sqlite_gateway.decider.decide(caller, DecisionRequest("events", "training"))
    return sqlite_gateway.queries.dataset("events"), plan


def test_ranges_follow_row_groups(events: tuple[DatasetInfo, Plan], small_ranges: None) -> None:
    info, _ = events
    groups = pq.ParquetFile(info.path).metadata.num_row_groups
    ranges = runner._ranges(str(info.path))
    assert len(ranges) == groups > 1
    assert ranges[0][0] == 0 and ranges[-1][1] == info.row_count
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_a_parallel_read_equals_the_serial_one_in_order(
    events: tuple[DatasetInfo, Plan], small_ranges: None
) -> None:
    info, plan = events
    serial, parallel = Engine(parallel=1), Engine(parallel=3)
    try:
        for kwargs in ({}, {"shard": (1, 3)}, {"exclude": frozenset(range(0, 300_000, 11))}):
            one = serial.reader(info, plan, **kwargs).read_all()
            many = parallel.reader(info, plan, **kwargs).read_all()
            if "exclude" in kwargs:  # the anti-join does not keep file order
                one, many = one.sort_by(ROW_ID), many.sort_by(ROW_ID)
            assert many.num_rows == one.num_rows > 0
            assert many.equals(one), kwargs
        reader = parallel.reader(info, plan, batch_rows=10_000)
        assert all(b.num_rows <= 10_000 for b in reader)
    finally:
        serial.close()
        parallel.close()


def test_an_abandoned_parallel_read_stops(
    events: tuple[DatasetInfo, Plan], small_ranges: None
) -> None:
    info, plan = events
    engine = Engine(parallel=2)
    try:
        reader = engine.reader(info, plan)
        first = reader.read_next_batch()
        assert first.num_rows > 0
        reader.close()  # the remaining ranges are dropped; nothing hangs
        assert engine.table(info, plan).num_rows > first.num_rows
    finally:
        engine.close()


def test_files_whose_row_ids_are_out_of_order_stream_serially(tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    table = pa.table({ROW_ID: pa.array([7, 8, 5, 6], pa.int64()), "x": [1, 2, 3, 4]})
    pq.write_table(table, path, row_group_size=2)
    runner._ranges_of.cache_clear()
    assert runner._ranges(str(path)) == []
    assert runner._ranges(str(tmp_path / "missing.parquet")) == []


def test_ranges_of_a_file_with_gaps_cover_every_row_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an erasure rewrite leaves: ascending ids with holes where erased rows were.
    monkeypatch.setattr(runner, "_RANGE_BYTES", 1)
    path = tmp_path / "gaps.parquet"
    ids = [0, 1, 4, 5, 6, 9, 12, 13]
    pq.write_table(pa.table({ROW_ID: pa.array(ids, pa.int64())}), path, row_group_size=2)
    runner._ranges_of.cache_clear()
    ranges = runner._ranges(str(path))
    assert len(ranges) == 4
    assert ranges[0][0] == 0 and ranges[-1][1] == 14
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert sorted(i for i in ids for lo, hi in ranges if lo <= i < hi) == ids


def test_ranges_follow_a_file_replaced_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({ROW_ID: pa.array(range(10), pa.int64())}), path)
    runner._ranges_of.cache_clear()
    assert runner._ranges(str(path)) == [(0, 10)]
    pq.write_table(pa.table({ROW_ID: pa.array([0, 1, 2, 20], pa.int64())}), path)
    assert runner._ranges(str(path)) == [(0, 21)]


def test_a_rewritten_version_still_reads_in_parallel_and_equals_the_serial_read(
    events: tuple[DatasetInfo, Plan], small_ranges: None
) -> None:
    info, plan = events
    erased = BitMap(range(0, info.row_count, 7))
    rewrite_file(Path(info.path), erased)
    assert len(runner._ranges(str(info.path))) > 1
    serial, parallel = Engine(parallel=1), Engine(parallel=3)
    try:
        one = serial.reader(info, plan).read_all()
        many = parallel.reader(info, plan).read_all()
        assert many.equals(one)
        assert one.num_rows > 0
        assert not set(one.column(ROW_ID).to_pylist()) & set(erased)
    finally:
        serial.close()
        parallel.close()
