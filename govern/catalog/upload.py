"""Opening an uploaded file (Parquet or CSV) as a stream of Arrow record batches.

Nothing here loads a file whole: Parquet is read row group by row group, CSV block by block, so
an upload of any size passes through in bounded memory. Every pyarrow failure on the way
(corrupt pages, a CSV value that does not fit its column's type) becomes a BadRequest, raised
while the catalog writes the staged version, which it then removes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from govern.errors import BadRequest

__all__ = ["UploadFile", "open_upload"]

_PARQUET_MAGIC = b"PAR1"
_BATCH_ROWS = 65_536
# CSV types are inferred from the first block; later values must fit them.
CSV_BLOCK_BYTES = 1 << 20


@dataclass
class UploadFile:
    """An opened upload: its format, schema, size and a one-shot batch stream."""

    format: str
    schema: pa.Schema
    size: int
    total_rows: int | None
    batches: Iterator[pa.RecordBatch] = field(repr=False)
    # Bytes consumed so far (CSV) or rows read so far (Parquet), for progress reporting.
    done: int = 0

    def close(self) -> None:
        """Release the file now. A stream stopped early (staging failed) would otherwise keep
        it open until collected, holding a deleted upload's disk space."""
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()

    @property
    def progress_total(self) -> int:
        return self.total_rows if self.total_rows is not None else self.size


def open_upload(
    path: Path,
    filename: str | None = None,
    column_types: Mapping[str, pa.DataType] | None = None,
) -> UploadFile:
    """Detect the format (Parquet magic bytes, else CSV text) and open a batch stream.

    ``column_types``: types CSV columns of those names must have (a new version of an existing
    dataset keeps its types; a value that does not fit is a clear error, not a silent change).
    """
    size = path.stat().st_size
    if size == 0:
        raise BadRequest("the uploaded file is empty")
    with path.open("rb") as f:
        head = f.read(4096)
    lower = (filename or "").lower()
    if head[:4] == _PARQUET_MAGIC or lower.endswith(".parquet"):
        return _open_parquet(path, size)
    if b"\x00" in head:
        raise BadRequest(
            "the upload is neither Parquet nor CSV text",
            details={"filename": (filename or "")[:200]},
        )
    return _open_csv(path, size, column_types or {})


def _check_names(schema: pa.Schema) -> None:
    try:
        names = schema.names
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "the upload's column names are not UTF-8 text", details={"reason": str(exc)[:200]}
        ) from exc
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise BadRequest(
                f"column {name[:100]!r} appears more than once", details={"column": name[:100]}
            )
        seen.add(name)


def _open_parquet(path: Path, size: int) -> UploadFile:
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "the upload is not a readable Parquet file", details={"reason": str(exc)[:300]}
        ) from exc
    _check_names(schema)
    up = UploadFile("parquet", schema, size, pf.metadata.num_rows, iter(()))

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in pf.iter_batches(batch_size=_BATCH_ROWS):
                up.done += batch.num_rows
                yield batch
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise BadRequest(
                "the Parquet file is corrupt", details={"reason": str(exc)[:300]}
            ) from exc
        finally:
            pf.close()

    up.batches = batches()
    return up


def _open_csv(path: Path, size: int, column_types: Mapping[str, pa.DataType]) -> UploadFile:
    source = pa.OSFile(str(path), "rb")
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=dict(column_types)),
        )
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        source.close()
        raise _csv_error(exc) from exc
    schema = reader.schema
    try:
        _check_names(schema)
    except BadRequest:
        source.close()
        raise
    up = UploadFile("csv", schema, size, None, iter(()))

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                up.done = source.tell()
                yield batch
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise _csv_error(exc) from exc
        finally:
            source.close()

    up.batches = batches()
    return up


def _csv_error(exc: Exception) -> BadRequest:
    reason = str(exc)[:300]
    if "conversion error" in reason.lower():
        return BadRequest(
            "a CSV value does not fit its column's type (types are inferred from the first "
            f"{CSV_BLOCK_BYTES >> 20} MiB, or kept from the dataset's previous version)",
            details={"reason": reason},
        )
    return BadRequest("the upload is not a readable CSV file", details={"reason": reason})
