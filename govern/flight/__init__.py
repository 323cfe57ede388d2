"""Arrow Flight: the trainer-facing transport. Bearer-token auth on every call, governed
DoGet streams, errors as Flight errors with the JSON error body. See docs/flight.md."""

from __future__ import annotations

from govern.flight.server import FlightServer
from govern.flight.ticket import ReadCommand, ReadTicket

__all__ = ["FlightServer", "ReadCommand", "ReadTicket"]
