from __future__ import annotations

import pyarrow as pa
import pytest
from pyroaring import BitMap

from govern.catalog import ROW_ID
from govern.errors import GovernError
from govern.provenance.bitmaps import MAX_ROW_ID, from_bytes, row_ids_of, to_bytes


def test_row_ids_of_a_batch_and_a_chunked_table() -> None:
    batch = pa.record_batch({"x": [1, 2, 3], ROW_ID: pa.array([7, 3, 900_000], pa.int64())})
    assert row_ids_of(batch) == BitMap([3, 7, 900_000])
    table = pa.Table.from_batches([batch, batch.slice(0, 1)])
    assert row_ids_of(table) == BitMap([3, 7, 900_000])


def test_row_ids_beyond_32_bits_are_refused_not_truncated() -> None:
    batch = pa.record_batch({ROW_ID: pa.array([MAX_ROW_ID + 1], pa.int64())})
    with pytest.raises(GovernError, match="cannot be recorded"):
        row_ids_of(batch)
    with pytest.raises(GovernError):
        row_ids_of(pa.record_batch({ROW_ID: pa.array([None, 1], pa.int64())}))


def test_serialisation_round_trips_and_compresses_dense_ranges() -> None:
    dense = BitMap(range(0, 5_000_000))
    data = to_bytes(dense)
    assert from_bytes(data) == dense
    assert len(data) < 2_000  # run containers: a dense read costs bytes, not megabytes
    sparse = BitMap(range(0, 5_000_000, 97))
    assert from_bytes(to_bytes(sparse)) == sparse
