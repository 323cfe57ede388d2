"""The Arrow Flight server: governed reads of dataset versions, streamed as record batches.

Calls (every one authenticated by ``govern.flight.auth``):

- ``GetFlightInfo(descriptor)``: the descriptor's command is a read command (see
  ``govern.flight.ticket``); the Plan is decided (and logged) and the answer carries the
  schema the stream will have and one endpoint per shard, each ticket pinned to the version.
- ``GetSchema(descriptor)``: the same schema alone.
- ``DoGet(ticket)``: decides again with the caller's token, logs the decision and the read, and
  only then streams the rows the Plan allows (invariant 2); the row ids written to the client
  are recorded for the ticket's run (``govern.gateway.reads``).

- ``DoAction("recipe.put" | "recipe.get")``: register or read a run's recipe (how it was
  trained, so an erasure can retrain it; ``govern.unlearning.recipes``), for trainers that hold
  only a Flight URL and a token.

Everything else is refused. Errors leave as Flight errors with the JSON error body.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from govern.errors import BadRequest, ConfigError, GovernError
from govern.flight.auth import AUTH_MIDDLEWARE, BearerAuthFactory, caller_of
from govern.flight.errors import flight_errors, internal_error, to_flight_error
from govern.flight.ticket import ReadCommand, ReadTicket, RecipeAction
from govern.gateway import Gateway, GovernedRead, ReadDescription

__all__ = ["FlightServer"]

log = logging.getLogger("govern.flight")


class FlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """Serves as soon as it is constructed (gRPC runs its own threads); ``stop`` ends it.

    Use as a context manager, or call ``stop()``; ``port`` is the bound port (useful with 0).
    """

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        self.gateway = gateway
        self._active: set[GovernedRead] = set()
        self._active_lock = threading.Lock()
        self._stopped = False
        location = f"grpc://{host}:{port}"
        try:
            auth = BearerAuthFactory(gateway.decider.authenticate)
            super().__init__(location, middleware={AUTH_MIDDLEWARE: auth})
        except (OSError, pa.ArrowException) as exc:
            raise ConfigError(
                f"cannot serve Arrow Flight on {host}:{port}", details={"cause": str(exc)[:200]}
            ) from exc
        self.host = host

    @property
    def location(self) -> str:
        return f"grpc://{self.host}:{self.port}"

    def __enter__(self) -> FlightServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reads ---------------------------------------------------------------------------------

    def _describe(self, context: Any, descriptor: Any) -> tuple[ReadCommand, ReadDescription]:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise BadRequest("use a command descriptor holding a read command (docs/flight.md)")
        command = ReadCommand.decode(bytes(descriptor.command))
        return command, self.gateway.reads.describe(caller_of(context), command.request())

    def get_flight_info(self, context: Any, descriptor: Any) -> flight.FlightInfo:
        with flight_errors():
            command, described = self._describe(context, descriptor)
            endpoints = [
                flight.FlightEndpoint(ticket.encode(), [])
                for ticket in command.tickets(described.info.version)
            ]
            return flight.FlightInfo(described.schema, descriptor, endpoints, -1, -1)

    def get_schema(self, context: Any, descriptor: Any) -> flight.SchemaResult:
        with flight_errors():
            return flight.SchemaResult(self._describe(context, descriptor)[1].schema)

    def do_get(self, context: Any, ticket: Any) -> flight.GeneratorStream:
        with flight_errors():
            request = ReadTicket.decode(bytes(ticket.ticket)).request()
            read = self.gateway.reads.open(caller_of(context), request)
        return flight.GeneratorStream(read.schema, _Stream(read, self._active, self._active_lock))

    # -- everything else is refused ------------------------------------------------------------

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        raise to_flight_error(
            BadRequest("listing is not offered; GET /v1/datasets lists the datasets")
        )

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        raise to_flight_error(BadRequest("the Flight service is read-only"))

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        raise to_flight_error(BadRequest("DoExchange is not offered"))

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [
            ("recipe.put", "register a run's recipe: {run_id, recipe} (docs/unlearning.md)"),
            ("recipe.get", "a run's recipe: {run_id}"),
        ]

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        # Trainers in retrain jobs hold a Flight URL and a token, not the REST address, so the
        # recipe calls are offered here too; both paths end in the same Gateway methods.
        with flight_errors():
            caller = caller_of(context)
            if action.type not in ("recipe.put", "recipe.get"):
                raise BadRequest(f"no action {str(action.type)[:64]!r} is offered")
            body = RecipeAction.decode(bytes(action.body.to_pybytes() if action.body else b""))
            if action.type == "recipe.put":
                if body.recipe is None:
                    raise BadRequest("recipe.put needs a recipe")
                info = self.gateway.commands.put_recipe(caller, body.run_id, body.recipe)
            else:
                info = self.gateway.queries.recipe(caller, body.run_id)
            result = json.dumps(info.to_json(), separators=(",", ":")).encode()
        return iter([result])

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def active_reads(self) -> int:
        with self._active_lock:
            return len(self._active)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop serving; wait up to ``timeout`` (default: the setting) for reads in flight.

        gRPC's shutdown waits for every call, and a client that stops reading without closing
        holds its call open, so shutdown runs in a thread. Reads still open when the wait ends
        have what they delivered recorded and are logged as ``interrupted``. True if every
        call ended in time.
        """
        if self._stopped:
            return True
        self._stopped = True
        wait = self.gateway.settings.flight_shutdown_seconds if timeout is None else timeout
        closer = threading.Thread(target=self.shutdown, name="flight-shutdown", daemon=True)
        closer.start()
        closer.join(wait)
        if not closer.is_alive():
            return True
        with self._active_lock:
            stuck = list(self._active)
        log.warning("Flight shutdown: %d read(s) still open after %.1fs", len(stuck), wait)
        for read in stuck:
            read.finish_quietly("interrupted", release=False)
        return False


class _Stream:
    """The iterator a DoGet hands to gRPC: the read's batches, errors as Flight errors.

    An iterator object rather than a generator so that a stream dropped before its first batch
    (a client gone right after the call) still ends its read: a generator that never started
    runs no ``finally``, but this object's ``__del__`` runs when gRPC lets go of it.
    """

    def __init__(self, read: GovernedRead, active: set[GovernedRead], lock: threading.Lock) -> None:
        self._read = read
        self._batches = read.batches()
        self._active = active
        self._lock = lock
        with lock:
            active.add(read)

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> pa.RecordBatch:
        try:
            return next(self._batches)
        except StopIteration:
            self._done()
            raise
        except GovernError as exc:
            self._done()
            raise to_flight_error(exc) from None
        except Exception:
            self._done()
            log.exception("read %s failed mid-stream", self._read.read_index)
            raise internal_error() from None

    def _done(self) -> None:
        with self._lock:
            self._active.discard(self._read)

    def __del__(self) -> None:
        # Closing the generator records what was delivered (GeneratorExit inside it); a read
        # whose generator never started is ended here.
        self._batches.close()
        if self._read.state is None:
            self._read.finish_quietly("aborted")
        self._done()
