"""The one Flight error handler: a GovernError leaves as the Flight error its ``flight_status``
names, with the JSON error body as the message (and as ``extra_info``).

pyarrow's Python servers send NOT_FOUND or INVALID_ARGUMENT only by letting a KeyError or
ValueError escape, and then append the server's Python traceback to the message. govern never
sends tracebacks, so those statuses leave as ``FlightServerError`` and the body's ``error``
code (``dataset_not_found``, ``bad_request``, ...) says which it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pyarrow.flight as flight

from govern.errors import GovernError

__all__ = ["FLIGHT_ERRORS", "body_bytes", "flight_errors", "to_flight_error"]

log = logging.getLogger("govern.flight")

FLIGHT_ERRORS: dict[str, type[flight.FlightError]] = {
    "internal": flight.FlightInternalError,
    "invalid_argument": flight.FlightServerError,
    "unauthenticated": flight.FlightUnauthenticatedError,
    "unauthorized": flight.FlightUnauthorizedError,
    "not_found": flight.FlightServerError,
    "already_exists": flight.FlightServerError,
    "unavailable": flight.FlightUnavailableError,
}

_INTERNAL = {"error": "internal", "message": "internal error", "details": None}


def body_bytes(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def to_flight_error(exc: GovernError) -> flight.FlightError:
    data = body_bytes(exc.to_body())
    cls = FLIGHT_ERRORS.get(exc.flight_status, flight.FlightInternalError)
    return cls(data.decode(), data)


def internal_error() -> flight.FlightError:
    data = body_bytes(_INTERNAL)
    return flight.FlightInternalError(data.decode(), data)


@contextmanager
def flight_errors() -> Iterator[None]:
    """Turn anything raised inside into a Flight error that leaks nothing but the body."""
    try:
        yield
    except flight.FlightError:
        raise
    except GovernError as exc:
        raise to_flight_error(exc) from None
    except Exception:
        # Never str(exc) to the client: it may hold SQL or paths. The log has the traceback.
        log.exception("unhandled error in a Flight call")
        raise internal_error() from None
