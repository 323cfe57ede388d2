"""The anchorer over a real store and real chains: the embedded EVM, and a JSON-RPC URL on a
closed loopback port (a chain that is down, for real)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from govern.api import create_app
from govern.gateway import Gateway
from govern.ledger.anchor import Anchorer, AnchorStatus, ChainUnavailable, open_chain
from govern.ledger.anchor.keys import create_chain_key
from govern.ledger.verify import LedgerVerificationError, verify_bundle
from govern.settings import Settings, load_settings
from govern.store.migrate import upgrade
from tests.conftest import auth, free_port, wait_for
from tests.ledger_forgery import forge_history


def append(gateway: Gateway, n: int) -> None:
    for i in range(n):
        gateway.log("test.event", {"i": i}, "tester")


@pytest.fixture
def embedded(sqlite_gateway: Gateway) -> Iterator[Callable[..., Anchorer]]:
    made: list[Anchorer] = []

    def make(**kwargs: float) -> Anchorer:
        anchorer = Anchorer(
            lambda: sqlite_gateway.ledger,
            lambda: open_chain(sqlite_gateway.settings),
            sqlite_gateway.anchors,
            every_entries=int(kwargs.pop("every_entries", 10**6)),
            every_seconds=kwargs.pop("every_seconds", 3600.0),
            poll_seconds=kwargs.pop("poll_seconds", 0.02),
            **kwargs,
        )
        made.append(anchorer)
        return anchorer

    yield make
    for anchorer in made:
        anchorer.stop()


def test_anchors_every_n_entries(
    sqlite_gateway: Gateway, embedded: Callable[..., Anchorer]
) -> None:
    anchorer = embedded(every_entries=10)
    anchorer.start()
    append(sqlite_gateway, 9)
    time.sleep(0.3)
    assert sqlite_gateway.anchors.all() == []
    assert anchorer.status().lag_entries == 9
    append(sqlite_gateway, 1)
    wait_for(lambda: anchorer.status().anchored_size == 10, timeout=10.0)
    st = anchorer.status()
    assert st.lag_entries == 0 and st.lag_seconds == 0 and st.chain_up
    [record] = sqlite_gateway.anchors.all()
    assert record.tree_size == 10
    assert record.root_hash == sqlite_gateway.ledger.checkpoint_at(10).root_hash  # type: ignore[union-attr]


def test_anchors_after_t_seconds(
    sqlite_gateway: Gateway, embedded: Callable[..., Anchorer]
) -> None:
    anchorer = embedded(every_seconds=0.4)
    anchorer.start()
    append(sqlite_gateway, 3)
    started = time.monotonic()
    wait_for(lambda: anchorer.status().anchored_size == 3, timeout=10.0)
    assert time.monotonic() - started >= 0.3  # not before the oldest entry was 0.4 s old


def test_checkpoint_lists_its_anchors_and_verify_checks_the_chain(
    sqlite_gateway: Gateway, embedded: Callable[..., Anchorer]
) -> None:
    anchorer = embedded()
    append(sqlite_gateway, 12)
    record = anchorer.anchor_now()
    assert record is not None and record.tree_size == 12
    assert anchorer.anchor_now() is None  # nothing new to anchor

    client = TestClient(create_app(sqlite_gateway, close_on_shutdown=False))
    sqlite_gateway.principals.upsert("aud", ["auditor"], {})
    headers = auth(sqlite_gateway.tokens.issue("aud", "auditor"))
    head = client.get("/v1/ledger/checkpoint", headers=headers).json()
    assert head["tree_size"] == 12
    assert [a["tree_size"] for a in head["anchors"]] == [12]
    assert head["anchors"][0]["root_hash"] == head["root_hash"]
    assert head["anchors"][0]["tx_hash"] == record.tx_hash

    append(sqlite_gateway, 1)
    assert client.get("/v1/ledger/checkpoint", headers=headers).json()["anchors"] == []

    bundle = sqlite_gateway.ledger.bundle()
    bundle.anchors = [a.ref() for a in sqlite_gateway.anchors.all()]
    reader = open_chain(sqlite_gateway.settings, read_only=True)
    try:
        report = verify_bundle(bundle, reader)
        assert report.anchors == report.anchors_on_chain == 1
        # An operator rewrites entry 4 and re-signs everything with its own key: every offline
        # check still passes, the chain does not.
        forged = forge_history(bundle, sqlite_gateway.settings.keys_dir / "ledger.pem", 4)
        offline = verify_bundle(forged)
        assert offline.anchors == 1 and "NOT checked" in offline.notes[-1]
        with pytest.raises(LedgerVerificationError, match="anchor MISMATCH at tree size 12"):
            verify_bundle(forged, reader)
    finally:
        reader.close()


@pytest.fixture
def down_settings(tmp_path: Path) -> Settings:
    """The rpc backend pointed at a closed loopback port, with a chain key."""
    s = load_settings(
        home=tmp_path / "home",
        config=tmp_path / "none.toml",
        chain_rpc_url=f"http://127.0.0.1:{free_port()}",
        anchor_every_entries=5,
        anchor_every_seconds=0.2,
    )
    create_chain_key(s.resolved_chain_key_file)
    upgrade(s.resolved_database_url)
    return s


def test_chain_down_data_flows_and_the_lag_grows(down_settings: Settings) -> None:
    gateway = Gateway.open(down_settings)
    anchorer = Anchorer(
        lambda: gateway.ledger,
        lambda: open_chain(down_settings),
        gateway.anchors,
        every_entries=5,
        every_seconds=0.2,
        backoff_initial=0.05,
        backoff_max=0.4,
        poll_seconds=0.01,
    )
    gateway.anchorer = anchorer
    try:
        anchorer.start()
        started = time.perf_counter()
        append(gateway, 20)
        # Appends never wait on the chain: local and durable only.
        assert time.perf_counter() - started < 5
        assert gateway.ledger.size == 20
        wait_for(lambda: anchorer.status().failures >= 4, timeout=10.0)
        st = anchorer.status()
        assert st.chain_up is False and st.anchored_size == 0 and st.anchors == 0
        assert st.lag_entries == 20
        assert st.last_error is not None and "JSON-RPC node http://127.0.0.1" in st.last_error
        assert st.retry_in_seconds <= 0.4
        lag_before = st.lag_seconds
        time.sleep(1.0)
        append(gateway, 5)
        st = anchorer.status()
        assert st.lag_entries == 25 and st.lag_seconds > lag_before + 0.9
        # Backoff: polling every 10 ms would have made ~100 attempts in this second; capped
        # exponential backoff (0.05 s doubling to 0.4 s, with jitter) makes a handful.
        assert 4 <= st.failures <= 20
        assert st.consecutive_failures == st.failures

        client = TestClient(create_app(gateway, close_on_shutdown=False))
        text = client.get("/metrics").text
        assert "govern_ledger_anchor_lag_entries 25.0" in text
        assert "govern_ledger_anchor_chain_up 0.0" in text
        lag = re.search(r"^govern_ledger_anchor_lag_seconds (\S+)$", text, re.MULTILINE)
        assert lag is not None and float(lag.group(1)) > 1.0
        # A direct attempt says why, as the 503 kind of error.
        with pytest.raises(ChainUnavailable):
            anchorer.anchor_now()
    finally:
        gateway.close()


def test_backoff_is_exponential_capped_and_resets(sqlite_gateway: Gateway) -> None:
    anchorer = Anchorer(
        lambda: sqlite_gateway.ledger,
        lambda: open_chain(sqlite_gateway.settings),
        sqlite_gateway.anchors,
        every_entries=1,
        every_seconds=1.0,
        backoff_initial=1.0,
        backoff_max=8.0,
    )
    ceilings = []
    for _ in range(6):
        anchorer._failed(ChainUnavailable("down"))
        st: AnchorStatus = anchorer.status()
        ceilings.append(st.retry_in_seconds)
    # Attempt k waits between half and all of min(8, 2**(k-1)) seconds.
    for k, delay in enumerate(ceilings, start=1):
        ceiling = min(8.0, 2.0 ** (k - 1))
        assert ceiling / 2 - 0.05 <= delay <= ceiling
    append(sqlite_gateway, 1)
    anchorer._next_attempt = 0.0  # the wait is over
    assert anchorer.anchor_now() is not None
    st = anchorer.status()
    assert st.consecutive_failures == 0 and st.retry_in_seconds == 0 and st.chain_up
    anchorer.stop()


def test_serving_gateway_runs_the_anchorer(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path / "home", config=tmp_path / "none.toml", anchor_every_entries=3)
    upgrade(s.resolved_database_url)
    gateway = Gateway.open(s, anchor=True)
    try:
        assert gateway.anchorer is not None
        append(gateway, 3)
        gateway.anchorer.wake()
        wait_for(lambda: len(gateway.anchors.all()) == 1, timeout=10.0)
    finally:
        gateway.close()
    off = load_settings(home=tmp_path / "h2", config=tmp_path / "none.toml", chain_backend="none")
    upgrade(off.resolved_database_url)
    quiet = Gateway.open(off, watch=True)
    assert quiet.anchorer is None
    quiet.close()
