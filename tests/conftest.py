"""Fixtures that build real resources: a migrated store (SQLite or the local PostgreSQL), a
gateway over it, an app client, principals with tokens."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from govern.api import create_app
from govern.gateway import Gateway
from govern.settings import Settings, load_settings
from govern.store import Database
from govern.store.migrate import upgrade

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not _postgres_reachable():
        if IN_CI:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI and is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database per test, dropped afterwards."""
    name = f"govern_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'govern.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


# The local model's converted copy (about 20 s to make) is shared by every test that loads it.
MODEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "govern-models"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        database_url=database_url,
        config=tmp_path / "none.toml",
        llm_cache_dir=MODEL_CACHE,
    )


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """For unit tests that need a store but not both backends."""
    return load_settings(
        home=tmp_path / "home", config=tmp_path / "none.toml", llm_cache_dir=MODEL_CACHE
    )


def _open(settings: Settings) -> Iterator[Gateway]:
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    yield gateway
    gateway.close()


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Gateway]:
    yield from _open(settings)


@pytest.fixture
def sqlite_gateway(sqlite_settings: Settings) -> Iterator[Gateway]:
    yield from _open(sqlite_settings)


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(gateway, close_on_shutdown=False)) as c:
        yield c


TokenFactory = Callable[..., str]


@pytest.fixture
def token_for(gateway: Gateway) -> TokenFactory:
    """token_for("alice", "steward", region="eu") creates the principal and returns a token."""

    def make(pid: str, role: str, **attributes: object) -> str:
        gateway.commands.put_principal(pid, [role], attributes, TEST_ACTOR)
        return gateway.commands.issue_token(pid, role, TEST_ACTOR).token

    return make


# The actor tests name when they change things through the command layer.
TEST_ACTOR = "test"


def raw_store(gateway: Gateway) -> Database:
    """An unguarded handle on a gateway's store, for a test that must plant state no command
    makes (a row as an older release left it, a tampered leaf). Dispose of it after use."""
    return Database(gateway.settings.resolved_database_url)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def serve_rest(gateway: Gateway) -> Iterator[str]:
    """The REST app (and so the console) served by uvicorn on a free loopback port, in a
    background thread; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gateway, close_on_shutdown=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    """A loopback port free now (bound, then released): for servers a test starts, or, left
    unused, for a service that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.02)
