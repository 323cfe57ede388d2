"""Executing Plans in DuckDB, streaming record batches with bounded memory."""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from govern.catalog import DatasetInfo
from govern.engine.query import plan_query
from govern.policy import rowfilter
from govern.policy.plan import Plan

__all__ = ["Engine"]

_BATCH_ROWS = 64_000


class Engine:
    """One DuckDB database per process; each query gets its own cursor (DuckDB's rule for
    concurrent use from several threads)."""

    def __init__(self, threads: int | None = None, memory_limit: str = "2GB") -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        self._lock = threading.Lock()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._con.cursor()

    def reader(
        self, info: DatasetInfo, plan: Plan, batch_rows: int = _BATCH_ROWS
    ) -> pa.RecordBatchReader:
        q = plan_query(info, plan)
        relation = self._cursor().sql(q.sql, params=q.params)
        assert relation is not None
        return relation.to_arrow_reader(batch_rows)

    def table(self, info: DatasetInfo, plan: Plan) -> pa.Table:
        return self.reader(info, plan).read_all()

    def compare(
        self, info: DatasetInfo, old: rowfilter.RowFilter | None, new: rowfilter.RowFilter | None
    ) -> tuple[int, int, int, int]:
        """Rows selected before, after, gained and lost, in one scan (None selects nothing)."""
        # to_sql renders two-valued SQL (never NULL), so NOT and AND compose safely here.
        a, pa_ = rowfilter.to_sql(old) if old is not None else ("FALSE", [])
        b, pb = rowfilter.to_sql(new) if new is not None else ("FALSE", [])
        counts = ", ".join(
            f"count(*) FILTER (WHERE {w})"
            for w in (a, b, f"({b}) AND NOT ({a})", f"({a}) AND NOT ({b})")
        )
        # Filters are rendered with bound values and quoted identifiers.
        sql = f"SELECT {counts} FROM read_parquet('{_literal_path(info)}')"  # noqa: S608
        row = self._cursor().execute(sql, [*pa_, *pb, *pb, *pa_, *pa_, *pb]).fetchone()
        assert row is not None
        before, after, gained, lost = (int(v) for v in row)
        return before, after, gained, lost

    def close(self) -> None:
        self._con.close()


def _literal_path(info: DatasetInfo) -> str:
    # The path comes from the catalog, never from a caller; quoted all the same.
    return str(info.path).replace("'", "''")
