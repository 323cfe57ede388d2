"""Shared by the Flight, provenance and connector tests: the demo at small scale, a larger
multi-batch dataset, and a real Flight server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa

from govern.demo import load_demo
from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.policy.files import read_rules
from govern.resources import policies_dir
from tests.conftest import TEST_ACTOR

# A dataset big enough for several record batches (the engine streams 64k rows per batch),
# with a wide text column so that a client that stops reading stalls the server's writes.
EVENTS_ROWS = 300_000
EVENTS_RULES = [
    ["p", "r.sub.role == 'trainer'", "events", "read", "training", "r.obj.kind != 'bot'", "allow"],
    ["p", "r.sub.role == 'trainer'", "events", "read", "evaluation", "True", "allow"],
]


def load_small_demo(gateway: Gateway) -> None:
    load_demo(gateway, scale=0.02)


def demo_rules(*extra: list[str]) -> list[list[str]]:
    return [list(r) for r in read_rules(policies_dir() / "demo.csv")] + [list(r) for r in extra]


def events_table(rows: int = EVENTS_ROWS, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 5_000, rows)
    return pa.table(
        {
            "user_id": pa.array([f"E{u:05d}" for u in users]),
            "kind": pa.array(rng.choice(["click", "view", "bot"], rows, p=[0.45, 0.45, 0.1])),
            "payload": pa.array(["x" * 120] * rows),
            "value": pa.array(rng.random(rows)),
        }
    )


def load_events(gateway: Gateway) -> None:
    """The events dataset, readable by trainers for training (no bots) and evaluation."""
    gateway.commands.register_dataset(
        "events", events_table(), "user_id", TEST_ACTOR, tags={"user_id": ["pii.id"]}
    )
    gateway.commands.put_policy(None, demo_rules(*EVENTS_RULES), TEST_ACTOR)


@contextmanager
def flight_server(gateway: Gateway) -> Iterator[FlightServer]:
    """A real govern Flight server on a free loopback port, stopped (and checked) on exit."""
    server = FlightServer(gateway, "127.0.0.1", 0)
    try:
        yield server
    finally:
        assert server.stop(timeout=15), "Flight server did not stop in time"
