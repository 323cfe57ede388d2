"""Hugging Face ``datasets`` adapters (install the ``datasets`` extra).

``to_hf_dataset`` wraps a governed table in memory; ``to_hf_iterable_dataset`` streams it as
N shards, each one governed read, which ``datasets`` assigns to DataLoader workers (and
``datasets.distributed.split_dataset_by_node`` to ranks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import datasets
import pyarrow as pa

from govern_connect.client import Client

__all__ = ["to_hf_dataset", "to_hf_iterable_dataset"]


def to_hf_dataset(table: pa.Table) -> datasets.Dataset:
    return datasets.Dataset(table)


def _generate(
    url: str,
    token: str,
    dataset: str,
    purpose: str,
    run_id: str,
    columns: tuple[str, ...] | None,
    version: int,
    timeout: float | None,
    shards: list[tuple[int, int]],
) -> Iterator[dict[str, Any]]:
    # ``datasets`` hands each worker a sub-list of ``shards``.
    with Client(url, token, timeout=timeout) as client:
        for shard in shards:
            reader = client.reader(
                dataset,
                purpose=purpose,
                run_id=run_id,
                columns=list(columns) if columns is not None else None,
                version=version,
                shard=shard,
            )
            for batch in reader:
                yield from batch.to_pylist()


def to_hf_iterable_dataset(
    url: str,
    token: str,
    dataset: str,
    *,
    purpose: str,
    run_id: str,
    version: int,
    columns: Sequence[str] | None = None,
    num_shards: int = 8,
    schema: pa.Schema | None = None,
    timeout: float | None = None,
) -> datasets.IterableDataset:
    if num_shards < 1:
        raise ValueError("num_shards is at least 1")
    features = datasets.Features.from_arrow_schema(schema) if schema is not None else None
    return datasets.IterableDataset.from_generator(
        _generate,
        features=features,
        gen_kwargs={
            "url": url,
            "token": token,
            "dataset": dataset,
            "purpose": purpose,
            "run_id": run_id,
            # A tuple, not a list: list-valued arguments are what ``datasets`` shards.
            "columns": tuple(columns) if columns is not None else None,
            "version": version,
            "timeout": timeout,
            "shards": [(i, num_shards) for i in range(num_shards)],
        },
    )
