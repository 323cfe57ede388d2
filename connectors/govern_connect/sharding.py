"""Which shard a reader takes: pure arithmetic, shared by the PyTorch and HF adapters.

The gateway splits a dataset version by row id modulo the shard count, so shards are disjoint
and together are exactly the Plan's rows. A job of ``world_size`` ranks, each with
``num_workers`` DataLoader workers, has ``world_size * num_workers`` readers; reader
(rank, worker) takes shard ``rank * num_workers + worker``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["env_rank_world", "shard_for"]


def shard_for(*, rank: int, world_size: int, worker: int, num_workers: int) -> tuple[int, int]:
    """(shard index, shard count) for one reader."""
    if world_size < 1 or num_workers < 1:
        raise ValueError("world_size and num_workers are at least 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} is outside 0..{num_workers - 1}")
    return rank * num_workers + worker, world_size * num_workers


def env_rank_world(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) from ``RANK``/``WORLD_SIZE`` (torchrun, accelerate), else (0, 1)."""
    e = os.environ if env is None else env
    try:
        return int(e.get("RANK", "0")), int(e.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise ValueError("RANK and WORLD_SIZE must be integers") from exc
