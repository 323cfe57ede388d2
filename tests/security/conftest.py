"""Fixtures for the security suite: the scene (tests/security/scene.py) over SQLite or over
each store backend, and a real Flight server over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from govern.flight import FlightServer
from tests.security.scene import Scene, open_scene
from tests.unit.flight.serving import flight_server


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    """The demo over SQLite."""
    with open_scene(tmp_path) as s:
        yield s


@pytest.fixture
def any_scene(tmp_path: Path, database_url: str) -> Iterator[Scene]:
    """The demo over each store backend (SQLite and the local PostgreSQL)."""
    with open_scene(tmp_path, database_url) as s:
        yield s


@pytest.fixture
def flight_of(scene: Scene) -> Iterator[FlightServer]:
    with flight_server(scene.gateway) as server:
        yield server
