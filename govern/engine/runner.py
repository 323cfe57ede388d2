"""Executing Plans in DuckDB, streaming record batches with bounded memory."""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from govern.catalog import ROW_ID, DatasetInfo, parquet_source
from govern.engine.masks import MaskCache
from govern.engine.query import plan_query
from govern.plan import Plan, rowfilter

__all__ = ["Engine"]

_BATCH_ROWS = 64_000
# Parallel reads split a version into ranges of whole row groups of about this many
# (uncompressed) bytes; each range in flight is held in memory, so this bounds memory too.
_RANGE_BYTES = 32 << 20
# A version with a row group larger than this streams serially instead (memory stays bounded).
_MAX_GROUP_BYTES = 256 << 20


class Engine:
    """One DuckDB database per process; each query gets its own cursor (DuckDB's rule for
    concurrent use from several threads)."""

    def __init__(
        self,
        threads: int | None = None,
        memory_limit: str = "2GB",
        parallel: int | None = None,
        mask_dir: Path | None = None,
    ) -> None:
        """``mask_dir``: where hashed columns are kept once computed (:mod:`.masks`); None
        hashes on every read."""
        self._con = duckdb.connect(":memory:")
        self._con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        self._lock = threading.Lock()
        # DuckDB runs a streamed query on one thread; reads of big versions run this many
        # row-group ranges at once instead (see ``reader``).
        self.parallel = max(1, parallel or threads or min(os.cpu_count() or 1, 4))
        self.masks = MaskCache(mask_dir, self._cursor) if mask_dir is not None else None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            return self._con.cursor()

    def reader(
        self,
        info: DatasetInfo,
        plan: Plan,
        batch_rows: int = _BATCH_ROWS,
        *,
        exclude: Collection[int] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> pa.RecordBatchReader:
        """Stream the Plan's rows, in row-id order; see ``plan_query`` for ``exclude`` and
        ``shard``.

        A version of several row-group ranges is read ``parallel`` ranges at a time, each
        range one query, results yielded in range order; memory holds at most
        ``parallel + 2`` ranges. Otherwise DuckDB streams the one query batch by batch.
        """
        ranges = _ranges(str(info.path)) if self.parallel > 1 else []
        kept = self._kept(info, plan)
        if len(ranges) < 2:
            q = plan_query(info, plan, exclude=exclude, shard=shard, materialized=kept)
            relation = self._cursor().sql(q.sql, params=q.params)
            assert relation is not None
            return relation.to_arrow_reader(batch_rows)
        batches = self._ranged(info, plan, ranges, batch_rows, exclude, shard, kept)
        return pa.RecordBatchReader.from_batches(self.schema(info, plan), batches)

    def _kept(self, info: DatasetInfo, plan: Plan) -> Mapping[str, Path]:
        if self.masks is None or not plan.allowed:
            return {}
        return self.masks.ready(info, [c for c, a in plan.columns.items() if a == "hash"])

    def _ranged(
        self,
        info: DatasetInfo,
        plan: Plan,
        ranges: list[tuple[int, int]],
        batch_rows: int,
        exclude: Collection[int] | None,
        shard: tuple[int, int] | None,
        kept: Mapping[str, Path],
    ) -> Iterator[pa.RecordBatch]:
        def run(lo: int, hi: int) -> pa.Table:
            q = plan_query(
                info, plan, exclude=exclude, shard=shard, row_range=(lo, hi), materialized=kept
            )
            cursor = self._cursor()
            try:
                relation = cursor.sql(q.sql, params=q.params)
                assert relation is not None
                return relation.to_arrow_table()
            finally:
                cursor.close()

        pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="engine-range")
        todo = iter(ranges)
        pending: deque[Future[pa.Table]] = deque(
            pool.submit(run, lo, hi) for lo, hi in itertools.islice(todo, self.parallel + 1)
        )
        try:
            while pending:
                table = pending.popleft().result()
                following = next(todo, None)
                if following is not None:
                    pending.append(pool.submit(run, *following))
                yield from table.to_batches(max_chunksize=batch_rows)
        finally:
            # An abandoned read: drop what has not started; running ranges finish and are freed.
            pool.shutdown(wait=False, cancel_futures=True)

    def table(
        self,
        info: DatasetInfo,
        plan: Plan,
        *,
        exclude: Collection[int] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> pa.Table:
        return self.reader(info, plan, exclude=exclude, shard=shard).read_all()

    def schema(self, info: DatasetInfo, plan: Plan) -> pa.Schema:
        """The Arrow schema the Plan's stream will have, masks included, without reading rows."""
        q = plan_query(info, plan)
        relation = self._cursor().sql(q.sql, params=q.params)
        assert relation is not None
        schema: pa.Schema = relation.limit(0).to_arrow_table().schema
        return schema

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
        sql = f"SELECT {counts} FROM {parquet_source(info.path)}"  # noqa: S608
        row = self._cursor().execute(sql, [*pa_, *pb, *pb, *pa_, *pa_, *pb]).fetchone()
        assert row is not None
        before, after, gained, lost = (int(v) for v in row)
        return before, after, gained, lost

    def close(self) -> None:
        if self.masks is not None:
            self.masks.close()
        self._con.close()


def _ranges(path: str) -> list[tuple[int, int]]:
    """[lo, hi) row-id ranges of whole row groups, about ``_RANGE_BYTES`` each, that together
    cover every row id in the file; [] when a row group is too big to hold.

    Cached by the file's identity as well as its path: an erasure rewrite replaces a version's
    file in place (``govern.unlearning.rewrite``)."""
    try:
        st = os.stat(path)
    except OSError:
        return []  # the serial path reports the error properly
    return _ranges_of(path, st.st_mtime_ns, st.st_size, st.st_ino)


@functools.lru_cache(maxsize=512)
def _ranges_of(path: str, mtime_ns: int, size: int, inode: int) -> list[tuple[int, int]]:
    """The catalog writes ``_row_id`` as 0..n-1 in file order, so without statistics row group
    k holds the ids from the row count of the groups before it. A rewritten file has gaps
    where erased rows were; there the statistics give each group's ids, and a range reaches
    up to where the next one starts, so no id falls between two ranges."""
    del mtime_ns, size, inode  # cache key only
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException):
        return []
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if ROW_ID not in names:
        return []
    rid = names.index(ROW_ID)
    out: list[tuple[int, int]] = []
    lo = start = size = 0
    gapped = False
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        stats = group.column(rid).statistics
        if group.total_byte_size > _MAX_GROUP_BYTES:
            return []
        if stats is not None and stats.has_min_max:
            first, last = int(stats.min), int(stats.max)
            if first < start or last - first + 1 < group.num_rows:
                return []  # not in ascending id order: only the serial path is safe
            gapped = gapped or first != start or last - first + 1 != group.num_rows
        elif gapped:
            return []  # ids after a gap cannot be inferred from row counts
        else:
            first, last = start, start + group.num_rows - 1
        if size and size + group.total_byte_size > _RANGE_BYTES:
            out.append((lo, first))
            lo, size = first, 0
        start = last + 1
        size += group.total_byte_size
    if start > lo:
        out.append((lo, start))
    return out
