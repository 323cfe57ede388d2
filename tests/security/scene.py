"""The scene every attack runs against: the real gateway over the small demo (SQLite, or the
local PostgreSQL where a test asks for both), the real REST app, a live token per demo role,
and the checks that an attack left nothing behind: no log entry but denials, no file outside
GOVERN_HOME, no policy or catalog change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
from fastapi.testclient import TestClient
from sqlalchemy import select

from govern.api import create_app
from govern.demo import load_demo
from govern.gateway import Gateway
from govern.ledger.canonical import parse_leaf
from govern.settings import Settings, load_settings
from govern.store.migrate import upgrade
from govern.store.models import LedgerEntry
from tests.conftest import TEST_ACTOR, raw_store

ROLES = ("admin", "steward", "auditor", "compliance", "trainer")
# Only these kinds may follow an attack: the denial itself, logged like any decision.
DENIAL_KINDS = frozenset({"decision"})


@dataclass
class Scene:
    gateway: Gateway
    client: TestClient
    root: Path  # the test's own folder; GOVERN_HOME is root / "home"
    tokens: dict[str, str]  # role -> a live token of the demo principal with that role

    @property
    def home(self) -> Path:
        return self.gateway.settings.home

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def log_size(self) -> int:
        return self.gateway.queries.log_size()

    def entries_since(self, start: int) -> list[dict[str, Any]]:
        db = raw_store(self.gateway)
        try:
            with db.session() as s:
                leaves = s.scalars(
                    select(LedgerEntry.leaf)
                    .where(LedgerEntry.idx >= start)
                    .order_by(LedgerEntry.idx)
                ).all()
        finally:
            db.dispose()
        return [parse_leaf(bytes(leaf)) for leaf in leaves]

    def files_outside_home(self) -> set[Path]:
        return {p for p in self.root.rglob("*") if p.is_file() and self.home not in p.parents} - {
            self.root / "none.toml"
        }

    def state(self) -> tuple[Any, ...]:
        """What an attack must not change: the policy in force, the catalog, the principals."""
        q = self.gateway.queries
        return (
            q.policy().version,
            sorted((d.name, d.version) for d in q.datasets()),
            sorted((p.id, p.roles, tuple(sorted(p.attributes.items()))) for p in q.principals()),
        )

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        """The block may be refused any number of times; afterwards nothing but denials was
        logged, nothing changed, and no file appeared outside GOVERN_HOME."""
        start, state, files = self.log_size(), self.state(), self.files_outside_home()
        yield
        after = self.entries_since(start)
        assert [e for e in after if e["kind"] not in DENIAL_KINDS] == []
        assert [e for e in after if e["data"].get("decision") != "deny"] == []
        assert self.state() == state
        assert self.files_outside_home() == files


def _settings(root: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    return load_settings(
        home=root / "home",
        config=root / "none.toml",
        llm_backend="none",
        jobs_backend="none",
        erasure_rewrite=False,
        **({"database_url": database_url} if database_url else {}),
        **overrides,
    )


@contextmanager
def open_scene(root: Path, database_url: str | None = None, **overrides: Any) -> Iterator[Scene]:
    """The scene; ``overrides`` are settings (say a smaller body cap)."""
    settings = _settings(root, database_url, **overrides)
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    try:
        load_demo(gateway, scale=0.02)
        tokens = {
            role: gateway.commands.issue_token(f"demo-{role}", role, TEST_ACTOR, 3600).token
            for role in ROLES
        }
        with TestClient(create_app(gateway, close_on_shutdown=False)) as client:
            yield Scene(gateway, client, root, tokens)
    finally:
        gateway.close()


def refusal(response: Any, status: int) -> dict[str, Any]:
    """The machine-readable error body of a refused REST call, checked for its shape."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message", "details"}, body
    assert isinstance(body["error"], str) and body["error"]
    return body


def flight_refusal(exc: BaseException) -> dict[str, Any]:
    """The JSON error body that begins a Flight error's message."""
    assert isinstance(exc, flight.FlightError), exc
    text = str(exc)
    assert "Traceback" not in text, text  # the server never sends its stack
    body: dict[str, Any] = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
    assert set(body) == {"error", "message", "details"}, body
    return body


def flight_options(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
