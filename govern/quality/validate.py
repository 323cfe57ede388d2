"""Run a suite over a dataset version with Great Expectations (pandas), in bounded memory.

Row expectations run chunk by chunk (``chunk_rows`` rows at a time) and their counts are added;
the frame's index is the row id, so failing rows are reported by their stable ``_row_id``.
Schema expectations run on the first chunk. Whole-column expectations run on a frame holding
only the columns they name, read whole. Every verdict comes from Great Expectations itself.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from govern.catalog.names import ROW_ID
from govern.quality.suite import check_kwargs, domain_key, kind_of

__all__ = ["ValidationReport", "validate_file"]

_PARTIAL = 20
# progress(done, total) in rows
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    rows: int
    chunks: int
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["success"]]

    def to_json(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "rows": self.rows,
            "chunks": self.chunks,
            "evaluated": len(self.results),
            "failed": len(self.failed),
            "results": self.results,
        }

    def summary(self) -> dict[str, Any]:
        """What goes to the ledger: the verdict and which expectations failed."""
        return {
            "success": self.success,
            "rows": self.rows,
            "evaluated": len(self.results),
            "failed": [
                {
                    "type": r["type"],
                    "column": r["kwargs"].get("column"),
                    "unexpected_count": r.get("unexpected_count"),
                }
                for r in self.failed
            ],
        }


_gx_lock = threading.Lock()


def _gx() -> Any:
    """Import Great Expectations once, quietly (it is slow to import and logs chattily)."""
    with _gx_lock:
        import great_expectations as gx

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        return gx


def _pandas(table: pa.Table, first_row: int, *, exact_types: bool = False) -> Any:
    """A pandas frame indexed by row id. ``exact_types``: nullable dtypes, so an integer
    column with nulls stays ``Int64`` (for type expectations). Otherwise numbers keep numpy
    dtypes, on which Great Expectations' range checks are vectorised (on nullable dtypes it
    maps a Python function over every value, ~10x slower)."""
    import pandas as pd

    mapping: dict[pa.DataType, Any] = {pa.string(): pd.StringDtype("pyarrow")}
    if exact_types:
        mapping |= {
            pa.int64(): pd.Int64Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
        }
    df = table.to_pandas(types_mapper=mapping.get, date_as_object=False)
    df.index = pd.RangeIndex(first_row, first_row + table.num_rows)
    return df


class _Runner:
    """One ephemeral GE context with progress bars off; validates frames."""

    def __init__(self) -> None:
        gx = _gx()
        self.gx = gx
        self.ctx = gx.get_context(mode="ephemeral")
        # GE draws tqdm bars on stderr for every metric pass; a server must not.
        self.ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        source = self.ctx.data_sources.add_pandas("govern")
        self.batch_definition = source.add_dataframe_asset(
            "version"
        ).add_batch_definition_whole_dataframe("whole")

    def run(self, df: Any, expectations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        if not expectations:
            return []
        suite = self.gx.ExpectationSuite(name="suite")
        for i, e in enumerate(expectations):
            # Checked again here: a suite stored before the check must not run either.
            check_kwargs(e["kwargs"], i)
            suite.add_expectation_configuration(
                ExpectationConfiguration(type=e["type"], kwargs=dict(e["kwargs"]))
            )
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format={"result_format": "SUMMARY"})
        # GE neither promises the suite's order nor keeps two expectations of one type on one
        # domain (``check_suite`` refuses those), so results are matched back by that key.
        found = {
            domain_key(r.expectation_config.type, r.expectation_config.kwargs): _plain(r)
            for r in result.results
        }
        return [found[domain_key(e["type"], e["kwargs"])] for e in expectations]


def _plain(r: Any) -> dict[str, Any]:
    res = dict(r.result or {})
    exc = r.exception_info or {}
    message = None
    if exc.get("raised_exception"):
        message = exc.get("exception_message")
    else:  # GE nests metric errors one level down, keyed by metric id
        for v in exc.values():
            if isinstance(v, Mapping) and v.get("raised_exception"):
                message = v.get("exception_message")
    return {
        "success": bool(r.success) and message is None,
        "element_count": res.get("element_count"),
        "missing_count": res.get("missing_count"),
        "unexpected_count": res.get("unexpected_count"),
        "observed_value": _json(res.get("observed_value")),
        "partial_unexpected_list": [_json(v) for v in res.get("partial_unexpected_list") or []],
        "unexpected_row_ids": [int(i) for i in res.get("partial_unexpected_index_list") or []],
        "exception": str(message)[:500] if message else None,
    }


def _json(v: Any) -> Any:
    """JSON-safe scalars (numpy numbers, pandas NA and timestamps come back from GE)."""
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, list | tuple):
        return [_json(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json(x) for k, x in v.items()}
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    item = getattr(v, "item", None)
    if callable(item):
        try:
            return _json(item())
        except (TypeError, ValueError):
            pass
    return str(v)


def _merge(parts: list[dict[str, Any]], mostly: float | None) -> dict[str, Any]:
    """Add up one row expectation's results over chunks."""

    def total(key: str) -> int | None:
        vals = [p[key] for p in parts if p[key] is not None]
        return sum(vals) if vals else None

    out = dict(parts[0])
    out["element_count"] = total("element_count")
    out["missing_count"] = total("missing_count")
    out["unexpected_count"] = total("unexpected_count")
    out["partial_unexpected_list"] = [v for p in parts for v in p["partial_unexpected_list"]][
        :_PARTIAL
    ]
    out["unexpected_row_ids"] = [v for p in parts for v in p["unexpected_row_ids"]][:_PARTIAL]
    errors = [p["exception"] for p in parts if p["exception"]]
    out["exception"] = errors[0] if errors else None
    if errors:
        out["success"] = False
    elif mostly is None:
        out["success"] = all(p["success"] for p in parts)
    else:
        # Recompute ``mostly`` over the whole version: chunks alone cannot decide it.
        nonmissing = (out["element_count"] or 0) - (out["missing_count"] or 0)
        bad = out["unexpected_count"] or 0
        out["success"] = nonmissing == 0 or (nonmissing - bad) / nonmissing >= mostly
    return out


def _chunks(pf: pq.ParquetFile, columns: list[str], chunk_rows: int) -> Iterator[pa.Table]:
    if not columns:
        return
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
        yield pa.Table.from_batches([batch])


def validate_file(
    path: Path,
    suite: Mapping[str, Any],
    *,
    chunk_rows: int = 1_000_000,
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate the Parquet version at ``path`` against ``suite``."""
    expectations = list(suite.get("expectations", []))
    pf = pq.ParquetFile(path)
    try:
        return _validate(pf, expectations, chunk_rows, progress)
    finally:
        pf.close()


def _validate(
    pf: pq.ParquetFile,
    expectations: list[Mapping[str, Any]],
    chunk_rows: int,
    progress: Progress | None,
) -> ValidationReport:
    rows = pf.metadata.num_rows
    present = [n for n in pf.schema_arrow.names if n != ROW_ID]
    runner = _Runner()
    by_kind: dict[str, list[int]] = {"row": [], "schema": [], "whole": []}
    for i, e in enumerate(expectations):
        by_kind[kind_of(str(e["type"]))].append(i)
    results: dict[int, dict[str, Any]] = {}

    # Schema expectations: names and dtypes, the same in every chunk; a small slice suffices.
    head = pf.read_row_group(0, columns=present) if pf.num_row_groups else None
    if head is None:
        head = pa.table({n: pa.array([], pf.schema_arrow.field(n).type) for n in present})
    head_df = _pandas(head.slice(0, 1000), 0, exact_types=True)
    for i, r in zip(
        by_kind["schema"],
        runner.run(head_df, [expectations[i] for i in by_kind["schema"]]),
        strict=True,
    ):
        results[i] = r

    # Row expectations, chunk by chunk over only the columns they name.
    row_idx = by_kind["row"]
    needed = sorted(
        {c for i in row_idx for c in _columns(expectations[i]) if c in present}
        | ({present[0]} if present else set())
    )
    parts: dict[int, list[dict[str, Any]]] = {i: [] for i in row_idx}
    done = chunks = 0
    if row_idx:
        for table in _chunks(pf, needed, chunk_rows):
            chunk = runner.run(_pandas(table, done), [expectations[i] for i in row_idx])
            for i, r in zip(row_idx, chunk, strict=True):
                parts[i].append(r)
            done += table.num_rows
            chunks += 1
            if progress:
                progress(done, rows)
        if chunks == 0:  # an empty version: GE still gives each expectation its verdict
            chunk = runner.run(_pandas(head.slice(0, 0), 0), [expectations[i] for i in row_idx])
            for i, r in zip(row_idx, chunk, strict=True):
                parts[i].append(r)
    for i in row_idx:
        kwargs = expectations[i].get("kwargs", {})
        mostly = kwargs.get("mostly")
        results[i] = _merge(parts[i], float(mostly) if mostly is not None else None)

    # Whole-column expectations, grouped by the columns they read.
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in by_kind["whole"]:
        cols = tuple(c for c in _columns(expectations[i]) if c in present)
        groups.setdefault(cols, []).append(i)
    import pandas as pd

    for cols, idx in groups.items():
        if cols:
            df = _pandas(pf.read(columns=list(cols)), 0)
        else:  # table-level (row count): a frame of the right length and no columns
            df = pd.DataFrame(index=pd.RangeIndex(rows))
        for i, r in zip(idx, runner.run(df, [expectations[i] for i in idx]), strict=True):
            results[i] = r
        del df
    if progress:
        progress(rows, rows)

    ordered = []
    for i, e in enumerate(expectations):
        ordered.append({"type": e["type"], "kwargs": dict(e.get("kwargs", {})), **results[i]})
    return ValidationReport(
        success=all(r["success"] for r in ordered),
        rows=rows,
        chunks=max(chunks, 1),
        results=ordered,
    )


def _columns(e: Mapping[str, Any]) -> list[str]:
    kw = e.get("kwargs", {})
    cols = []
    for key in ("column", "column_A", "column_B"):
        if isinstance(kw.get(key), str):
            cols.append(kw[key])
    if isinstance(kw.get("column_list"), list):
        cols += [c for c in kw["column_list"] if isinstance(c, str)]
    return cols
