from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from govern.catalog import ROW_ID, ColumnInfo, DatasetInfo
from govern.catalog.scratch import claim_file
from govern.engine import Engine, runner
from govern.engine.query import mask_expression, plan_query
from govern.plan import Plan, rowfilter


def run(expr: str, params: list[object], values: list[object], sql_type: str) -> list[object]:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t (c {sql_type}, _row_id BIGINT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(v, i) for i, v in enumerate(values)])
    rows = con.execute(f"SELECT {expr} FROM t ORDER BY _row_id", params).fetchall()
    return [r[0] for r in rows]


def salted(params: list[object], salt: str) -> list[object]:
    return [salt if p == "__SALT__" else p for p in params]


def test_hash_is_salted_deterministic_and_keeps_null() -> None:
    expr, params = mask_expression("c", "VARCHAR", "hash")
    a = run(expr, salted(params, "s1"), ["x@y.org", "x@y.org", None], "VARCHAR")
    b = run(expr, salted(params, "s2"), ["x@y.org"], "VARCHAR")
    assert a[0] == a[1] and a[2] is None
    assert a[0] != b[0] and a[0] != "x@y.org" and len(str(a[0])) == 64


def test_truncate_generalize_and_redact() -> None:
    expr, p = mask_expression("c", "VARCHAR", "truncate")
    assert run(expr, p, ["abcdefg", None], "VARCHAR") == ["abcd", None]
    expr, p = mask_expression("c", "DATE", "generalize_date")
    assert run(expr, p, [dt.date(2024, 5, 17)], "DATE") == [dt.date(2024, 5, 1)]
    expr, p = mask_expression("c", "VARCHAR", "redact")
    assert run(expr, p, ["secret", None], "VARCHAR") == ["[REDACTED]", None]


def test_noise_is_bounded_and_deterministic_per_row() -> None:
    expr, params = mask_expression("c", "BIGINT", "noise")
    values = list(range(100, 200))
    first = run(expr, salted(params, "s"), values, "BIGINT")
    again = run(expr, salted(params, "s"), values, "BIGINT")
    assert first == again
    assert all(abs(int(n) - v) <= 2 for n, v in zip(first, values, strict=True))  # type: ignore[call-overload]
    assert first != values


@pytest.mark.parametrize(
    ("sql_type", "action", "value"),
    [("BIGINT", "truncate", 42), ("VARCHAR", "noise", "abc"), ("BOOLEAN", "generalize_date", True)],
)
def test_a_mask_that_does_not_fit_the_type_redacts(
    sql_type: str, action: str, value: object
) -> None:
    expr, params = mask_expression("c", sql_type, action)
    out = run(expr, salted(params, "s"), [value], sql_type)
    assert out[0] in (None, "[REDACTED]")


# --- hashed columns kept once per version (govern.engine.masks) --------------------------------


def _version(folder: Path, rows: int = 5000, group: int = 700) -> DatasetInfo:
    """A version file as the catalog writes one: ``_row_id`` 0..n-1 in file order, several row
    groups; values with NULLs, non-ASCII text and repeats."""
    rng = random.Random(7)
    texts = ["ana@x.org", "björn@y.de", "", "名前@z.jp", "'; DROP TABLE t; --", None]
    table = pa.table(
        {
            "email": [rng.choice(texts) for _ in range(rows)],
            "name": [None if i % 11 == 0 else f"person {i % 97}" for i in range(rows)],
            "n": pa.array([i % 500 - 250 for i in range(rows)], pa.int64()),
            ROW_ID: pa.array(range(rows), pa.int64()),
        }
    )
    path = folder / "v1.parquet"
    pq.write_table(table, path, row_group_size=group)
    return DatasetInfo(
        name="people",
        version=1,
        version_id=1,
        path=path,
        row_count=rows,
        subject_column="email",
        columns=(
            ColumnInfo("email", "VARCHAR", ("pii.email",)),
            ColumnInfo("name", "VARCHAR", ("pii.name",)),
            ColumnInfo("n", "BIGINT", ()),
        ),
        mask_salt="salt-of-people",
        state="active",
    )


PLAN = Plan(
    decision="allow",
    dataset="people",
    version=1,
    purpose="training",
    subject_id="t",
    row_filter=rowfilter.Compare(">=", rowfilter.Column("n"), rowfilter.Value(-100)),
    columns={"email": "hash", "name": "hash", "n": "noise"},
)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return bytes(sink.getvalue())


@pytest.fixture
def people(tmp_path: Path) -> DatasetInfo:
    return _version(tmp_path)


@pytest.mark.parametrize("parallel", [1, 3])
def test_kept_hashes_give_the_same_bytes_as_hashing_on_each_read(
    people: DatasetInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    # Small ranges, so the parallel path joins each range of the kept file separately.
    monkeypatch.setattr(runner, "_RANGE_BYTES", 4096)
    plain = Engine(threads=1, parallel=parallel)
    kept = Engine(threads=1, parallel=parallel, mask_dir=tmp_path / "masks")
    try:
        assert kept.masks is not None
        for kw in ({}, {"exclude": {3, 4, 700, 4999}}, {"shard": (1, 3)}):
            want = plain.table(people, PLAN, **kw)  # type: ignore[arg-type]
            first = kept.table(people, PLAN, **kw)  # type: ignore[arg-type]
            kept.masks.wait()
            assert len(list((tmp_path / "masks").rglob("*.parquet"))) == 2
            again = kept.table(people, PLAN, **kw)  # type: ignore[arg-type]
            assert _ipc(first) == _ipc(want) == _ipc(again)
            assert want.num_rows > 0
    finally:
        plain.close()
        kept.close()


def test_a_read_uses_the_kept_file_and_it_is_checked_row_by_row(
    people: DatasetInfo, tmp_path: Path
) -> None:
    engine = Engine(threads=1, parallel=1, mask_dir=tmp_path / "masks")
    try:
        assert engine.masks is not None
        engine.table(people, PLAN)
        engine.masks.wait()
        (email,) = engine.masks.ready(people, ["email"]).values()
        q = plan_query(people, PLAN, materialized={"email": email})
        assert "POSITIONAL JOIN" in q.sql and "sha256" in q.sql  # name is kept too, not given
        # Rows out of step with the version (here: reversed) make the read fail, never serve
        # another row's hash.
        reversed_ = pq.read_table(email).take(pa.array(range(people.row_count - 1, -1, -1)))
        pq.write_table(reversed_, email)
        with pytest.raises(duckdb.Error, match="out of step"):
            engine.table(people, PLAN)
    finally:
        engine.close()


def test_a_rewritten_version_is_hashed_afresh_and_discard_deletes_the_kept_values(
    people: DatasetInfo, tmp_path: Path
) -> None:
    masks = tmp_path / "masks"
    engine = Engine(threads=1, parallel=1, mask_dir=masks)
    try:
        assert engine.masks is not None
        engine.table(people, PLAN)
        engine.masks.wait()
        before = sorted(p.name for p in masks.rglob("*.parquet"))
        # An erasure rewrite replaces the file: fewer rows, a new identity.
        table = pq.read_table(people.path)
        pq.write_table(table.filter(pc.greater(table[ROW_ID], 9)), people.path)
        assert engine.masks.ready(people, ["email", "name"]) == {}
        engine.masks.wait()
        after = sorted(p.name for p in masks.rglob("*.parquet"))
        assert len(after) == 2 and not set(before) & set(after)
        plain = Engine(threads=1, parallel=1)
        try:
            assert _ipc(engine.table(people, PLAN)) == _ipc(plain.table(people, PLAN))
        finally:
            plain.close()
        engine.masks.discard(people.path)
        assert list(masks.rglob("*.parquet")) == []
    finally:
        engine.close()


def test_a_build_a_killed_process_left_is_swept_and_a_live_one_is_not(
    people: DatasetInfo, tmp_path: Path
) -> None:
    engine = Engine(threads=1, parallel=1, mask_dir=tmp_path / "masks")
    try:
        assert engine.masks is not None
        folder = tmp_path / "masks" / "v"
        folder.mkdir(parents=True)
        dead = folder / ".build-dead.parquet"  # no process holds it: its writer was killed
        dead.write_bytes(b"PAR1 half")
        live = claim_file(folder, ".build-", ".parquet")  # held by this (live) process
        try:
            assert engine.masks.sweep() == 1
            assert not dead.exists() and live.path.exists()
        finally:
            live.release()
    finally:
        engine.close()
