"""SQL for a Plan: the row filter as bound parameters, column masks as expressions.

Identifiers come from the catalog and are quoted by rowfilter's validator; values and the mask
salt are bound parameters. Nothing a caller sends is pasted into SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from govern.catalog import ROW_ID, DatasetInfo, parquet_source
from govern.errors import GovernError
from govern.plan import Plan, rowfilter

__all__ = ["Query", "mask_expression", "plan_query"]

_TRUNCATE_CHARS = 4
_INT_NOISE = 2  # +/- this much on integer columns
_FLOAT_NOISE = 0.05  # +/- this fraction on float columns


@dataclass(frozen=True)
class Query:
    sql: str
    params: list[object]
    columns: list[str]


def _quote(name: str) -> str:
    return rowfilter.quote_identifier(name)


def mask_expression(column: str, sql_type: str, action: str) -> tuple[str, list[object]]:
    """(expression, params) computing a masked column; NULL stays NULL."""
    c = _quote(column)
    if action == "pass":
        return c, []
    if action == "hash":
        # Salted per dataset, so hashes join within a dataset but not across datasets.
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE sha256(? || CAST({c} AS VARCHAR)) END", [
            "__SALT__"
        ]
    if action == "truncate" and sql_type == "VARCHAR":
        return f"left({c}, {_TRUNCATE_CHARS})", []
    if action == "generalize_date" and sql_type == "DATE":
        return f"CAST(date_trunc('month', {c}) AS DATE)", []
    if action == "generalize_date" and sql_type == "TIMESTAMP":
        return f"date_trunc('month', {c})", []
    if action == "noise" and sql_type == "BIGINT":
        # Deterministic per row and salt, so re-reading cannot average the noise away.
        return (
            f"{c} + CAST((hash({_quote(ROW_ID)}, ?) % {2 * _INT_NOISE + 1}) AS BIGINT) "
            f"- {_INT_NOISE}",
            ["__SALT__"],
        )
    if action == "noise" and sql_type == "DOUBLE":
        return (
            f"{c} * (1 + ((hash({_quote(ROW_ID)}, ?) % 2001) / 1000.0 - 1.0) * {_FLOAT_NOISE})",
            ["__SALT__"],
        )
    if action in {"redact", "truncate", "generalize_date", "noise"}:
        # A mask that does not fit the type falls back to the strictest mask, never to pass.
        if sql_type == "VARCHAR":
            return f"CASE WHEN {c} IS NULL THEN NULL ELSE '[REDACTED]' END", []
        return f"CAST(NULL AS {sql_type})", []
    raise GovernError(f"unknown column action {action!r}")


def plan_query(
    info: DatasetInfo,
    plan: Plan,
    *,
    with_row_id: bool = True,
    exclude: Collection[int] | None = None,
    shard: tuple[int, int] | None = None,
    row_range: tuple[int, int] | None = None,
    materialized: Mapping[str, Path] | None = None,
) -> Query:
    """The Plan's SELECT. ``exclude``: row ids of this version never to be served (the hook
    erasure fills). ``shard=(i, n)``: only rows whose row id is i modulo n, so n readers split
    a version into disjoint parts that together are exactly the Plan's rows. ``row_range=(lo,
    hi)``: only row ids in [lo, hi), which Parquet statistics turn into skipped row groups.
    ``materialized``: for hashed columns, files holding their hashes already computed
    (:mod:`govern.engine.masks`), joined by position instead of hashing each value."""
    if not plan.allowed or plan.row_filter is None:
        raise GovernError("a denied Plan has no query")
    select: list[str] = []
    params: list[object] = []
    names: list[str] = []
    types = info.column_types
    row_id = _quote(ROW_ID)
    kept = {c: f for c, f in (materialized or {}).items() if plan.columns.get(c) == "hash"}
    joined: list[str] = []
    for column, action in plan.columns.items():
        if action == "drop":
            continue
        if column in kept:
            # Joined by position: the kept file has the version's rows in the version's order;
            # a row id that does not match is an error, never another row's hash.
            k = len(joined)
            joined.append(_kept_source(kept[column], k, row_range))
            expr = (
                f"CASE WHEN _kept{k}_row_id = {row_id} THEN _kept{k}_value "
                f"ELSE error('a kept hash column is out of step with its version') END"
            )
            p: list[object] = []
        else:
            expr, p = mask_expression(column, types[column], action)
        select.append(f"{expr} AS {_quote(column)}")
        params += [info.mask_salt if v == "__SALT__" else v for v in p]
        names.append(column)
    if with_row_id:
        select.append(row_id)
        names.append(ROW_ID)
    where, where_params = rowfilter.to_sql(plan.row_filter)
    conditions = [f"({where})"]
    params += list(where_params)
    if shard is not None:
        index, count = shard
        if count < 1 or not 0 <= index < count:
            raise GovernError(f"invalid shard {index} of {count}")
        conditions.append(f"({row_id} % ?) = ?")
        params += [count, index]
    if row_range is not None:
        conditions.append(f"{row_id} >= ? AND {row_id} < ?")
        params += [row_range[0], row_range[1]]
    if exclude:
        # An anti-join on a bound list: one hash table, however many rows are excluded.
        conditions.append(f"{row_id} NOT IN (SELECT unnest(CAST(? AS BIGINT[])))")
        params.append(sorted(exclude))
    source = parquet_source(info.path)
    if joined:
        # The range limits every side alike, so positions still line up.
        source = f"({_ranged(source, row_range)}) " + " ".join(
            f"POSITIONAL JOIN ({j})" for j in joined
        )
    # Identifiers are validated and quoted, values bound: see the module docstring.
    sql = (
        f"SELECT {', '.join(select)} FROM {source} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)}"
    )
    return Query(sql=sql, params=params, columns=names)


def _ranged(source: str, row_range: tuple[int, int] | None) -> str:
    if row_range is None:
        return f"SELECT * FROM {source}"  # noqa: S608 - a catalog path, quoted
    lo, hi = (int(v) for v in row_range)
    return f"SELECT * FROM {source} WHERE {_quote(ROW_ID)} >= {lo} AND {_quote(ROW_ID)} < {hi}"  # noqa: S608


def _kept_source(path: Path, k: int, row_range: tuple[int, int] | None) -> str:
    inner = _ranged(parquet_source(path), row_range)
    return f"SELECT {_quote(ROW_ID)} AS _kept{k}_row_id, v AS _kept{k}_value FROM ({inner})"  # noqa: S608
