"""What a dataset version's own values say, for compliance facts: its row and subject counts
and the distinct values of the columns that name where people are (country, region).

Computed with DuckDB over the version's Parquet file and cached per file: a version is
immutable, and a rewrite after an erasure writes a new file, so the cache key changes with it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb

from govern.catalog.names import parquet_source
from govern.catalog.service import DatasetInfo

__all__ = ["PLACE_TAGS", "VersionProfile", "VersionProfiler", "is_place_column"]

log = logging.getLogger(__name__)

# Column names that say where the people of a row are (the words of the name, any position).
_PLACE_WORDS = frozenset(
    {"country", "countries", "region", "nation", "nationality", "residence", "jurisdiction"}
)
# Tags a steward can use to mark such a column whatever its name.
PLACE_TAGS = ("geo.country", "geo.region")


def is_place_column(name: str, tags: tuple[str, ...] = ()) -> bool:
    words = {w for w in re.split(r"[_\W]+", name.lower()) if w}
    return bool(words & _PLACE_WORDS) or any(t in PLACE_TAGS for t in tags)


@dataclass(frozen=True)
class VersionProfile:
    dataset: str
    version: int
    rows: int
    subjects: int  # distinct non-null values of the subject column
    subject_column: str
    # place column -> its distinct non-null values (at most ``max_values``; more: truncated)
    places: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    truncated: frozenset[str] = frozenset()


class VersionProfiler:
    """Profiles versions, each file once (bounded cache); safe to share between threads."""

    def __init__(self, max_values: int = 500, cache_size: int = 256) -> None:
        self.max_values = max_values
        self._cache: OrderedDict[tuple[str, int], VersionProfile] = OrderedDict()
        self._size = cache_size
        self._lock = threading.Lock()

    def profile(self, info: DatasetInfo) -> VersionProfile | None:
        """None when the version's file cannot be read: no facts from the data is the safe
        side (the facts stay unknown, so verdicts that need them go to review)."""
        try:
            stat = info.path.stat()
            key = (str(info.path), stat.st_mtime_ns)
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
            found = self._compute(info)
        except (OSError, duckdb.Error) as exc:
            log.warning("no profile of %s v%s: %s", info.name, info.version, type(exc).__name__)
            return None
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return found

    def _compute(self, info: DatasetInfo) -> VersionProfile:
        source = parquet_source(info.path)
        subject = _ident(info.subject_column)
        places = [
            c.name for c in info.columns if c.type == "VARCHAR" and is_place_column(c.name, c.tags)
        ]
        con = duckdb.connect()
        try:
            row = con.execute(
                f"SELECT count(*), count(DISTINCT {subject}) FROM {source}"  # noqa: S608 - catalog names
            ).fetchone()
            rows, subjects = (int(row[0]), int(row[1])) if row else (0, 0)
            values: dict[str, tuple[str, ...]] = {}
            truncated: set[str] = set()
            for col in places:
                got = con.execute(
                    f"SELECT DISTINCT CAST({_ident(col)} AS VARCHAR) AS v FROM {source} "  # noqa: S608
                    f"WHERE {_ident(col)} IS NOT NULL ORDER BY v LIMIT ?",
                    [self.max_values + 1],
                ).fetchall()
                vals = tuple(str(v) for (v,) in got)
                if len(vals) > self.max_values:
                    truncated.add(col)
                    vals = vals[: self.max_values]
                values[col] = vals
        finally:
            con.close()
        return VersionProfile(
            dataset=info.name,
            version=info.version,
            rows=rows,
            subjects=subjects,
            subject_column=info.subject_column,
            places=values,
            truncated=frozenset(truncated),
        )


def _ident(name: str) -> str:
    # Column names are validated by the catalog; quoted all the same.
    return '"' + name.replace('"', '""') + '"'
