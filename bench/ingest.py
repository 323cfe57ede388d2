"""Benchmark: ingesting a 5M-row Parquet file, govern versus DuckDB copying it.

One run, side by side, one JSON line on stdout (also written to bench/results/ingest.json):

- ``duckdb_copy``: DuckDB ``COPY (SELECT * FROM read_parquet(src)) TO dst (FORMAT parquet)``,
  the floor: read and rewrite the file, nothing else;
- ``govern``: ``gateway.commands.ingest`` of the same file as a dataset's first version:
  streamed to a new zstd Parquet version with row ids, a default Great Expectations suite
  inferred and run over every row (row expectations in chunks of ``quality_chunk_rows``,
  uniqueness and row count over whole columns), tags proposed from a 500-row sample with
  Presidio, then committed and logged. Its per-stage seconds are reported.

The libraries govern loads on first use (Great Expectations, Presidio, spaCy) are loaded by a
small warm-up ingest first; that time is reported apart (``warmup_seconds``).

Usage: ``python bench/ingest.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from report import emit

from govern.gateway import Gateway
from govern.settings import load_settings
from govern.store.migrate import upgrade

BATCH = 500_000
_FIRST = np.array(["ana", "ben", "chloe", "dmitri", "elif", "farah", "goran", "hana"])
_NOTES = np.array(
    [
        "Asked about the delivery window for the next order.",
        "Reports asthma symptoms after the move; call back on +1 415-555-0182.",
        "Wants the invoice resent to the billing address on file.",
        "No further action needed, closing the ticket.",
    ]
)


def write_source(path: Path, rows: int, seed: int = 5) -> None:
    """A customer-records table built column-wise, BATCH rows at a time."""
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    for start in range(0, rows, BATCH):
        n = min(BATCH, rows - start)
        ids = np.arange(start, start + n)
        users = rng.integers(0, rows // 4 + 1, n)
        table = pa.table(
            {
                "record_id": pa.array(ids, pa.int64()),
                "user_id": pa.array(np.char.add("U", users.astype(str))),
                "email": pa.array(
                    np.char.add(np.char.add(rng.choice(_FIRST, n), users.astype(str)), "@ex.org")
                ),
                "phone": pa.array(
                    np.char.add("+1 415-555-", rng.integers(1000, 9999, n).astype(str))
                ),
                "age": pa.array(rng.integers(18, 95, n), pa.int64()),
                "amount": pa.array(np.round(rng.uniform(1, 900, n), 2)),
                "country": pa.array(rng.choice(np.array(["DE", "FR", "US", "JP", "BR"]), n)),
                "note": pa.array(rng.choice(_NOTES, n)),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()


def duckdb_copy(src: Path, dst: Path) -> float:
    con = duckdb.connect()
    try:
        t0 = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{src}')) TO '{dst}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        return time.perf_counter() - t0
    finally:
        con.close()


def govern_ingest(gateway: Gateway, src: Path) -> tuple[float, dict[str, float], Any]:
    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        marks.setdefault(stage, time.perf_counter())

    t0 = time.perf_counter()
    result = gateway.commands.ingest("bench_customers", src, "user_id", "bench", progress=progress)
    total = time.perf_counter() - t0
    order = ["write", "validate", "detect"]
    starts = [t0] + [marks[s] for s in order[1:]]
    ends = [marks[s] for s in order[1:]] + [t0 + total]
    stages = {s: round(e - b, 2) for s, b, e in zip(order, starts, ends, strict=True)}
    stages["detect_and_commit"] = stages.pop("detect")
    return total, stages, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / "source.parquet"
        write_source(src, args.rows)
        size = src.stat().st_size
        copy_s = duckdb_copy(src, d / "copy.parquet")

        settings = load_settings(home=d / "home", config=d / "none.toml", chain_backend="none")
        upgrade(settings.resolved_database_url)
        gateway = Gateway.open(settings)
        try:
            warm = d / "warm.parquet"
            write_source(warm, 1000)
            t0 = time.perf_counter()
            gateway.commands.ingest("bench_warmup", warm, "user_id", "bench")
            warmup_s = time.perf_counter() - t0
            total, stages, result = govern_ingest(gateway, src)
        finally:
            gateway.close()

    rows = args.rows
    out = {
        "bench": "ingest",
        "rows": rows,
        "source_mb": round(size / 1e6, 1),
        "duckdb_copy": {"seconds": round(copy_s, 2), "rows_per_s": round(rows / copy_s)},
        "govern": {
            "seconds": round(total, 2),
            "rows_per_s": round(rows / total),
            "stages": stages,
            "expectations": len(result.report.results),
            "validation_chunks": result.report.chunks,
            "validation_success": result.report.success,
            "proposed_tags": sorted(f"{p.column}:{p.tag}" for p in result.proposals),
            "warmup_seconds": round(warmup_s, 2),
        },
        "ratio_govern_to_duckdb": round((rows / total) / (rows / copy_s), 4),
    }
    emit("ingest", out)


if __name__ == "__main__":
    main()
