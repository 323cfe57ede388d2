"""Fixtures shared by the integration suites that read through Flight."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from govern.flight import FlightServer
from govern.gateway import Gateway
from tests.unit.flight.serving import flight_server, load_events, load_small_demo


@pytest.fixture
def server(gateway: Gateway) -> Iterator[FlightServer]:
    """A real Flight server on a free loopback port over the small demo and the events data."""
    load_small_demo(gateway)
    load_events(gateway)
    with flight_server(gateway) as s:
        yield s
