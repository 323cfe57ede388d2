"""govern_connect: read governed training data from a govern gateway over Arrow Flight.

``connect(url, token)`` returns a ``Client`` with ``.read(...)`` (a ``pyarrow.Table``),
``.reader(...)`` (a ``pyarrow.RecordBatchReader``), ``.duckdb(...)`` (a DuckDB relation over
the stream), ``.torch_dataset(...)`` (PyTorch, extra ``torch``) and ``.hf_dataset(...)`` /
``.hf_iterable_dataset(...)`` (Hugging Face, extra ``datasets``).
"""

from __future__ import annotations

from govern_connect.client import ROW_ID, Client, connect, error_body, ticket
from govern_connect.sharding import env_rank_world, shard_for

__all__ = [
    "ROW_ID",
    "Client",
    "__version__",
    "connect",
    "env_rank_world",
    "error_body",
    "shard_for",
    "ticket",
]

__version__ = "0.1.0"
