"""Identifier rules. Names that pass here are the only ones that ever reach SQL or a file path."""

from __future__ import annotations

import re

from govern.errors import BadRequest

__all__ = [
    "ROW_ID",
    "parquet_source",
    "validate_column_name",
    "validate_dataset_name",
    "validate_tag",
]

# The stable per-version row id that provenance and erasure key on.
ROW_ID = "_row_id"

# Checked with fullmatch: with match, `$` also accepts a final newline.
_DATASET = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
# r.obj.dataset is the dataset name in every policy request, so no column may take that name.
_RESERVED_COLUMNS = frozenset({"dataset"})


def parquet_source(path: object) -> str:
    """``read_parquet('<path>')`` for SQL. Paths come from the catalog, never from a caller;
    the literal is quoted all the same."""
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def validate_dataset_name(name: str) -> str:
    if not _DATASET.fullmatch(name):
        raise BadRequest(
            "dataset names are 1-63 characters: a lowercase letter, then lowercase letters, "
            "digits or underscores",
            details={"name": name[:100]},
        )
    return name


def validate_column_name(name: str) -> str:
    if not _COLUMN.fullmatch(name) or name.lower() in _RESERVED_COLUMNS:
        raise BadRequest(
            "column names are 1-63 characters: a letter, then letters, digits or underscores, "
            "and not 'dataset'",
            details={"column": name[:100]},
        )
    return name


def validate_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise BadRequest(
            "tags are lowercase letters, digits and ._- (e.g. pii.email)",
            details={"tag": tag[:100]},
        )
    return tag
