"""The catalog: datasets, their immutable versions on disk, columns, tags, the subject column."""

from __future__ import annotations

from govern.catalog.names import (
    ROW_ID,
    parquet_source,
    validate_column_name,
    validate_dataset_name,
)
from govern.catalog.service import Catalog, ColumnInfo, DatasetInfo

__all__ = [
    "ROW_ID",
    "Catalog",
    "ColumnInfo",
    "DatasetInfo",
    "parquet_source",
    "validate_column_name",
    "validate_dataset_name",
]
