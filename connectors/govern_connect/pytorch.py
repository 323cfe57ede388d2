"""A PyTorch ``IterableDataset`` over a governed read, sharded across DataLoader workers and
distributed ranks (install the ``torch`` extra).

Each reader opens its own Flight connection inside its worker (gRPC channels do not survive a
fork) and streams only its shard, so the gateway records, for the run, exactly the rows each
worker received. The dataset version is pinned when the dataset is built, so every worker and
rank reads the same version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from govern_connect.client import Client
from govern_connect.sharding import env_rank_world, shard_for

__all__ = ["GovernIterableDataset", "rows"]


def rows(batch: pa.RecordBatch) -> Iterable[dict[str, Any]]:
    """The default transform: one dict per row (``default_collate`` batches them)."""
    out: list[dict[str, Any]] = batch.to_pylist()
    return out


class GovernIterableDataset(IterableDataset[Any]):
    def __init__(
        self,
        url: str,
        token: str,
        dataset: str,
        *,
        purpose: str,
        run_id: str,
        version: int,
        columns: Sequence[str] | None = None,
        transform: Callable[[pa.RecordBatch], Iterable[Any]] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        if not run_id:
            raise ValueError("a run id is required: it is how the gateway records what you read")
        self.url = url
        self.token = token
        self.dataset = dataset
        self.purpose = purpose
        self.run_id = run_id
        self.version = version
        self.columns = list(columns) if columns is not None else None
        self.transform = transform or rows
        self.rank = rank
        self.world_size = world_size
        self.timeout = timeout

    def rank_world(self) -> tuple[int, int]:
        """Explicit rank/world size, else torch.distributed's, else the environment's."""
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return env_rank_world()

    def shard(self) -> tuple[int, int]:
        """This reader's (shard index, shard count), from the rank and the DataLoader worker."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self.rank_world()
        return shard_for(rank=rank, world_size=world, worker=worker, num_workers=workers)

    def __iter__(self) -> Iterator[Any]:
        shard = self.shard()
        with Client(self.url, self.token, timeout=self.timeout) as client:
            reader = client.reader(
                self.dataset,
                purpose=self.purpose,
                run_id=self.run_id,
                columns=self.columns,
                version=self.version,
                shard=shard,
            )
            for batch in reader:
                yield from self.transform(batch)
