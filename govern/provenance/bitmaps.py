"""Row-id sets as roaring bitmaps: the unit in which provenance is recorded and stored.

Row ids are per dataset version, 0..n-1 (see the catalog). Roaring bitmaps keep sets of
millions of ids in kilobytes when they are dense and test intersection in microseconds, which
is what "which runs read any row of subject X" needs. The 32-bit kind caps a version at 2**32
rows; larger versions are refused rather than recorded wrongly.
"""

from __future__ import annotations

import array

import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap

from govern.catalog import ROW_ID
from govern.errors import GovernError

__all__ = ["MAX_ROW_ID", "RowIds", "from_bytes", "row_ids_of", "to_bytes"]

MAX_ROW_ID = 2**32 - 1
RowIds = BitMap


def row_ids_of(batch: pa.RecordBatch | pa.Table) -> BitMap:
    """The ``_row_id`` values of a batch, as a bitmap (built from a 32-bit buffer, no loop)."""
    column = batch.column(ROW_ID)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    try:
        ids = pc.cast(column, pa.uint32(), safe=True)
    except pa.ArrowInvalid as exc:
        raise GovernError(f"row ids above {MAX_ROW_ID} cannot be recorded") from exc
    if ids.null_count:
        raise GovernError("a batch has rows without a row id")
    values = array.array("I")
    values.frombytes(ids.to_numpy(zero_copy_only=False).tobytes())
    return BitMap(values)


def to_bytes(ids: BitMap) -> bytes:
    # run_optimize turns dense stretches (most reads) into run containers: far smaller.
    ids.run_optimize()
    data: bytes = ids.serialize()
    return data


def from_bytes(data: bytes) -> BitMap:
    ids: BitMap = BitMap.deserialize(data)
    return ids
