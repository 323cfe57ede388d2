"""Hypothesis over upload parsing: any bytes uploaded as a file either open as a stream of
Arrow batches that read to the end, or are refused with BadRequest; nothing else escapes (a
500 in the API), wherever the bytes go wrong: the header, a value, the encoding, a truncated
Parquet footer."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govern.catalog.upload import open_upload
from govern.errors import BadRequest


def _parquet(n: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(n)), "name": [f"n{i}" for i in range(n)]}), buf)
    return buf.getvalue()


_CSV_CELLS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.integers().map(str)
_CSV = st.lists(st.lists(_CSV_CELLS, min_size=1, max_size=5), min_size=1, max_size=8).map(
    lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")
)
_BROKEN_PARQUET = st.builds(
    lambda n, cut, flip: _corrupt(_parquet(n), cut, flip),
    st.integers(1, 50),
    st.integers(0, 400),
    st.integers(0, 255),
)


def _corrupt(data: bytes, cut: int, flip: int) -> bytes:
    cut = min(cut, len(data) - 1)
    return data[:cut] + bytes([data[cut] ^ (flip or 1)]) + data[cut + 1 :]


_UPLOADS = (
    st.binary(min_size=1, max_size=600)
    | _CSV
    | st.binary(min_size=1, max_size=40).map(lambda b: b"\xff\xfe" + b + b"\n1,2\n")
    | _BROKEN_PARQUET
)


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a real regression
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=_UPLOADS, name=st.sampled_from(["up.csv", "up.parquet", "up", None]))
def test_any_upload_opens_and_reads_to_the_end_or_is_a_bad_request(
    tmp_path: Path, data: bytes, name: str | None
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    try:
        up = open_upload(path, name)
        rows = sum(batch.num_rows for batch in up.batches)
    except BadRequest:
        return
    assert rows >= 0 and up.format in ("csv", "parquet")
    assert len(set(up.schema.names)) == len(up.schema.names)
