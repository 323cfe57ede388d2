"""Column types: the Arrow types a dataset may hold and their DuckDB names."""

from __future__ import annotations

import pyarrow as pa

from govern.errors import BadRequest

__all__ = ["duckdb_type", "normalise_schema"]


def duckdb_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    raise BadRequest(
        f"unsupported column type {t}", details={"type": str(t), "supported": _SUPPORTED}
    )


_SUPPORTED = ["boolean", "integers", "floats", "strings", "date", "timestamp"]


def normalise_schema(schema: pa.Schema) -> pa.Schema:
    """One physical type per logical type, so every version of a dataset scans alike."""
    fields = []
    for f in schema:
        kind = duckdb_type(f.type)
        target = {
            "BOOLEAN": pa.bool_(),
            "BIGINT": pa.int64(),
            "DOUBLE": pa.float64(),
            "VARCHAR": pa.string(),
            "DATE": pa.date32(),
            "TIMESTAMP": pa.timestamp("us"),
        }[kind]
        fields.append(pa.field(f.name, target, nullable=True))
    return pa.schema(fields)
