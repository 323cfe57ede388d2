"""The Flight client: governed reads as Arrow tables, record batch readers and DuckDB relations.

Every call sends ``authorization: Bearer <token>``. A read is one DoGet whose ticket is the
read request itself (JSON, see ``ticket``); the gateway decides the Plan again for each call,
logs it, and streams only what the Plan allows, with a ``_row_id`` column that identifies each
row within its dataset version. Errors are pyarrow's Flight errors
(``FlightUnauthenticatedError``, ``FlightUnauthorizedError``, ``FlightServerError``, ...)
whose message starts with the gateway's JSON error body; ``error_body`` parses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.flight as flight

if TYPE_CHECKING:
    import datasets

    from govern_connect.pytorch import GovernIterableDataset

__all__ = ["ROW_ID", "Client", "connect", "error_body", "ticket"]

ROW_ID = "_row_id"

# gRPC cannot be used in a process forked from one that used it: the child's first call hangs.
# Record use, and refuse loudly in a forked child instead of hanging (DataLoader workers
# started with "fork" are the usual case).
_used_grpc = False
_forked_after_use = False


def _after_fork_in_child() -> None:
    global _forked_after_use
    _forked_after_use = _forked_after_use or _used_grpc


os.register_at_fork(after_in_child=_after_fork_in_child)


def ticket(
    dataset: str,
    *,
    purpose: str,
    run_id: str | None = None,
    columns: Sequence[str] | None = None,
    version: int | None = None,
    shard: tuple[int, int] | None = None,
    shards: int | None = None,
) -> bytes:
    """A read request as the gateway's ticket (or, with ``shards``, descriptor command)."""
    if isinstance(columns, str):
        raise TypeError("columns is a sequence of column names, not one string")
    body: dict[str, Any] = {"v": 1, "dataset": dataset, "purpose": purpose}
    if run_id is not None:
        body["run_id"] = run_id
    if columns is not None:
        body["columns"] = [c for c in columns if c != ROW_ID]
    if version is not None:
        body["version"] = version
    if shard is not None and shard[1] > 1:
        body["shard"] = [shard[0], shard[1]]
    if shards is not None:
        body["shards"] = shards
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def error_body(exc: BaseException) -> dict[str, Any] | None:
    """The gateway's ``{"error", "message", "details"}`` from a Flight error, if it has one."""
    extra = getattr(exc, "extra_info", b"")
    for text in (extra.decode(errors="replace") if extra else "", str(exc)):
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            body, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            continue
        if isinstance(body, dict) and "error" in body:
            return body
    return None


class Client:
    """A connection to a govern Flight endpoint. Thread-safe: reads may run in parallel."""

    def __init__(self, url: str, token: str, *, timeout: float | None = None) -> None:
        if not token:
            raise ValueError("a bearer token is required")
        if _forked_after_use:
            raise RuntimeError(
                "this process was forked from one that had used Arrow Flight, and gRPC cannot "
                "be used after a fork; start DataLoader workers with "
                "multiprocessing_context='spawn' (or 'forkserver')"
            )
        global _used_grpc
        _used_grpc = True
        self.url = url
        self.timeout = timeout
        self._token = token
        self._flight = flight.connect(url)
        self._options = flight.FlightCallOptions(
            timeout=timeout, headers=[(b"authorization", f"Bearer {token}".encode())]
        )

    # -- reads ---------------------------------------------------------------------------------

    def stream(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> flight.FlightStreamReader:
        """The raw Flight stream (``cancel()`` ends it early; the gateway records only what
        it wrote before)."""
        t = ticket(
            dataset, purpose=purpose, run_id=run_id, columns=columns, version=version, shard=shard
        )
        return self._flight.do_get(flight.Ticket(t), self._options)

    def reader(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> pa.RecordBatchReader:
        """The governed rows as a RecordBatchReader, streamed with bounded memory."""
        stream = self.stream(
            dataset, purpose=purpose, run_id=run_id, columns=columns, version=version, shard=shard
        )
        reader: pa.RecordBatchReader = stream.to_reader()
        return reader

    def read(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> pa.Table:
        """The governed rows as one pyarrow Table."""
        stream = self.stream(
            dataset, purpose=purpose, run_id=run_id, columns=columns, version=version, shard=shard
        )
        table: pa.Table = stream.read_all()
        return table

    def read_many(
        self,
        datasets: Iterable[str],
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Mapping[str, Sequence[str]] | None = None,
        max_workers: int = 4,
    ) -> dict[str, pa.Table]:
        """Several datasets read in parallel, one stream each; {dataset: table}."""
        names = list(dict.fromkeys(datasets))
        cols = columns or {}

        def one(name: str) -> pa.Table:
            return self.read(name, purpose=purpose, run_id=run_id, columns=cols.get(name))

        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(names) or 1))) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def duckdb(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the stream (consumed once: query it, or materialise it with
        ``.arrow()`` / ``create_table``)."""
        con = connection if connection is not None else duckdb.connect()
        reader = self.reader(
            dataset, purpose=purpose, run_id=run_id, columns=columns, version=version
        )
        relation: duckdb.DuckDBPyRelation = con.from_arrow(reader)
        return relation

    # -- metadata ------------------------------------------------------------------------------

    def info(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        shards: int = 1,
    ) -> flight.FlightInfo:
        """GetFlightInfo: the schema, and one endpoint per shard pinned to one version."""
        command = ticket(
            dataset,
            purpose=purpose,
            run_id=run_id,
            columns=columns,
            version=version,
            shards=shards,
        )
        return self._flight.get_flight_info(
            flight.FlightDescriptor.for_command(command), self._options
        )

    def schema(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
    ) -> pa.Schema:
        """The schema the read would have (masked types included)."""
        info = self.info(dataset, purpose=purpose, run_id=run_id, columns=columns, version=version)
        schema: pa.Schema = info.schema
        return schema

    def resolve_version(
        self,
        dataset: str,
        *,
        purpose: str,
        run_id: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> int:
        """The newest active version, so that shards read by several workers agree."""
        info = self.info(dataset, purpose=purpose, run_id=run_id, columns=columns)
        return int(json.loads(bytes(info.endpoints[0].ticket.ticket))["version"])

    # -- run recipes -----------------------------------------------------------------------------

    def put_recipe(self, run_id: str, recipe: Mapping[str, Any]) -> dict[str, Any]:
        """Register how run ``run_id`` is trained, so that an erasure can retrain it (Flight
        action ``recipe.put``; the same as ``PUT /v1/runs/{run_id}/recipe``)."""
        return self._action("recipe.put", {"run_id": run_id, "recipe": dict(recipe)})

    def get_recipe(self, run_id: str) -> dict[str, Any]:
        """The run's registered recipe (Flight action ``recipe.get``)."""
        return self._action("recipe.get", {"run_id": run_id})

    def _action(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        results = list(self._flight.do_action(flight.Action(kind, data), self._options))
        out: dict[str, Any] = json.loads(results[0].body.to_pybytes())
        return out

    # -- adapters (optional extras) ------------------------------------------------------------

    def torch_dataset(
        self,
        dataset: str,
        *,
        purpose: str = "training",
        run_id: str,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        transform: Callable[[pa.RecordBatch], Iterable[Any]] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> GovernIterableDataset:
        """A PyTorch IterableDataset sharded across DataLoader workers and ranks (extra
        ``torch``). The version is pinned now, so every worker reads the same one."""
        from govern_connect.pytorch import GovernIterableDataset

        pinned = version or self.resolve_version(
            dataset, purpose=purpose, run_id=run_id, columns=columns
        )
        return GovernIterableDataset(
            self.url,
            self._token,
            dataset,
            purpose=purpose,
            run_id=run_id,
            columns=columns,
            version=pinned,
            transform=transform,
            rank=rank,
            world_size=world_size,
            timeout=self.timeout,
        )

    def hf_dataset(
        self,
        dataset: str,
        *,
        purpose: str = "training",
        run_id: str,
        columns: Sequence[str] | None = None,
        version: int | None = None,
    ) -> datasets.Dataset:
        """The governed rows as an in-memory Hugging Face ``datasets.Dataset`` (extra
        ``datasets``)."""
        from govern_connect.hf import to_hf_dataset

        return to_hf_dataset(
            self.read(dataset, purpose=purpose, run_id=run_id, columns=columns, version=version)
        )

    def hf_iterable_dataset(
        self,
        dataset: str,
        *,
        purpose: str = "training",
        run_id: str,
        columns: Sequence[str] | None = None,
        version: int | None = None,
        num_shards: int = 8,
    ) -> datasets.IterableDataset:
        """A streaming Hugging Face ``datasets.IterableDataset`` of ``num_shards`` shards, which
        ``datasets`` spreads over DataLoader workers and ``split_dataset_by_node`` over ranks
        (extra ``datasets``)."""
        from govern_connect.hf import to_hf_iterable_dataset

        info = self.info(dataset, purpose=purpose, run_id=run_id, columns=columns, version=version)
        pinned = int(json.loads(bytes(info.endpoints[0].ticket.ticket))["version"])
        return to_hf_iterable_dataset(
            self.url,
            self._token,
            dataset,
            purpose=purpose,
            run_id=run_id,
            columns=columns,
            version=pinned,
            num_shards=num_shards,
            schema=info.schema,
            timeout=self.timeout,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._flight.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


def connect(url: str, token: str, *, timeout: float | None = None) -> Client:
    """Connect to a govern Flight endpoint, e.g. ``grpc://127.0.0.1:8815``."""
    return Client(url, token, timeout=timeout)
