"""The anchorer over a real store and real chains: the embedded EVM, and a JSON-RPC URL on a
closed loopback port (a chain that is down, for real).

Most tests use the anchorer a gateway runs (``Gateway.open(..., anchor=True)``); those that need
other timings (backoff, polling) build their own Anchorer the way the gateway does, recording
its anchors through the gateway's own command (``commands.record_anchor``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from govern.api import create_app
from govern.errors import ConfigError
from govern.gateway import Gateway
from govern.gateway.commands import ANCHOR_ACTOR
from govern.ledger.anchor import (
    Anchorer,
    AnchorRecord,
    AnchorRecords,
    AnchorStatus,
    ChainUnavailable,
    open_chain,
)
from govern.ledger.anchor.keys import create_chain_key
from govern.ledger.service import Ledger
from govern.ledger.verify import LedgerVerificationError, verify_bundle
from govern.settings import Settings, load_settings
from govern.store import Database
from govern.store.migrate import upgrade
from tests.conftest import MODEL_CACHE, TEST_ACTOR, auth, free_port, wait_for
from tests.ledger_forgery import forge_history

GatewayFactory = Callable[..., Gateway]
AnchorerFactory = Callable[..., Anchorer]


def append(gateway: Gateway, n: int) -> None:
    """``n`` entries, one change each."""
    for _ in range(n):
        gateway.commands.put_principal(f"p{gateway.queries.log_size()}", ["trainer"], {}, "tester")


def status(gateway: Gateway) -> AnchorStatus:
    """The status of the anchorer the gateway runs."""
    st = gateway.queries.anchor_status()
    assert st is not None, "the gateway runs no anchorer"
    return st


def anchor_entries(gateway: Gateway) -> list[tuple[int, dict[str, object]]]:
    """(index, entry) of every ``ledger.anchor`` entry."""
    views = gateway.queries.ledger_entries(gateway.operator, kind="ledger.anchor")
    return [(v.index, v.entry) for v in views]


def assert_logged(gateway: Gateway, record: AnchorRecord, index: int) -> None:
    """The anchor was logged, as the anchorer, as entry ``index``."""
    entry = gateway.queries.ledger_entry(gateway.operator, index).entry
    assert entry["kind"] == "ledger.anchor" and entry["actor"] == ANCHOR_ACTOR
    assert entry["data"] == {
        "tree_size": record.tree_size,
        "root_hash": record.root_hash.hex(),
        "chain_id": record.chain_id,
        "contract_address": record.contract_address,
        "tx_hash": record.tx_hash,
        "block_number": record.block_number,
    }


@pytest.fixture
def anchoring(tmp_path: Path) -> Iterator[GatewayFactory]:
    """anchoring(**settings) opens a gateway that runs its anchorer (embedded chain)."""
    opened: list[Gateway] = []

    def make(**overrides: object) -> Gateway:
        settings = load_settings(
            home=tmp_path / f"home{len(opened)}",
            config=tmp_path / "none.toml",
            llm_cache_dir=MODEL_CACHE,
            **overrides,
        )
        upgrade(settings.resolved_database_url)
        gateway = Gateway.open(settings, anchor=True)
        opened.append(gateway)
        return gateway

    yield make
    for gateway in opened:
        gateway.close()


@contextmanager
def own_anchorers(gateway: Gateway) -> Iterator[AnchorerFactory]:
    """Anchorers of a test's own timings over ``gateway``'s store, wired as ``Gateway.open``
    wires one: a ledger and anchor records on a guarded store, anchors recorded through the
    gateway's ``commands.record_anchor`` (the anchor and its entry in one transaction)."""
    settings = gateway.settings
    db = Database(settings.resolved_database_url, guarded=True)
    ledger = Ledger(db, settings.keys_dir / "ledger.pem", settings.ledger_origin)
    made: list[Anchorer] = []

    def make(**kwargs: float) -> Anchorer:
        anchorer = Anchorer(
            lambda: ledger,
            lambda: open_chain(settings),
            AnchorRecords(db),
            record=gateway.commands.record_anchor,
            every_entries=int(kwargs.pop("every_entries", 10**6)),
            every_seconds=kwargs.pop("every_seconds", 3600.0),
            poll_seconds=kwargs.pop("poll_seconds", 0.02),
            **kwargs,
        )
        made.append(anchorer)
        return anchorer

    try:
        yield make
    finally:
        for anchorer in made:
            anchorer.stop()
        ledger.close()
        db.dispose()


@pytest.fixture
def embedded(sqlite_gateway: Gateway) -> Iterator[AnchorerFactory]:
    """Own anchorers on the embedded chain of a gateway that runs none itself."""
    with own_anchorers(sqlite_gateway) as make:
        yield make


def test_anchors_every_n_entries(anchoring: GatewayFactory) -> None:
    gateway = anchoring(anchor_every_entries=10)
    append(gateway, 9)
    gateway.wake_anchorer()
    time.sleep(0.3)
    assert gateway.queries.anchors() == []
    assert status(gateway).lag_entries == 9
    append(gateway, 1)
    gateway.wake_anchorer()
    wait_for(lambda: status(gateway).anchored_size == 10, timeout=10.0)
    st = status(gateway)
    assert st.lag_entries == 0 and st.lag_seconds == 0 and st.chain_up
    [record] = gateway.queries.anchors()
    assert record.tree_size == 10
    assert record.root_hash == gateway.queries.root(10)
    # The anchor is itself an entry, after the ten it anchors.
    assert_logged(gateway, record, 10)
    assert gateway.queries.log_size() == 11


def test_anchors_after_t_seconds(embedded: AnchorerFactory, sqlite_gateway: Gateway) -> None:
    anchorer = embedded(every_seconds=0.4)
    anchorer.start()
    append(sqlite_gateway, 3)
    started = time.monotonic()
    wait_for(lambda: anchorer.status().anchored_size == 3, timeout=10.0)
    assert time.monotonic() - started >= 0.3  # not before the oldest entry was 0.4 s old
    [(index, _)] = anchor_entries(sqlite_gateway)
    assert index == 3


def test_a_gateway_anchors_after_t_seconds(anchoring: GatewayFactory) -> None:
    gateway = anchoring(anchor_every_seconds=0.4)
    append(gateway, 3)
    started = time.monotonic()
    wait_for(lambda: len(gateway.queries.anchors()) == 1, timeout=10.0)
    assert time.monotonic() - started >= 0.3
    assert gateway.queries.anchors()[0].tree_size == 3


def test_anchoring_does_not_feed_itself(anchoring: GatewayFactory) -> None:
    # The most eager settings: anchor at every entry, and at once. Each anchor appends its own
    # ``ledger.anchor`` entry; that entry alone must never make the next anchor due.
    gateway = anchoring(anchor_every_entries=1, anchor_every_seconds=0.05)
    append(gateway, 1)
    gateway.wake_anchorer()
    wait_for(lambda: len(gateway.queries.anchors()) == 1, timeout=10.0)
    [first] = gateway.queries.anchors()
    assert first.tree_size == 1
    assert_logged(gateway, first, 1)
    # Many polls later, with the anchor entry unanchored all along: nothing new.
    for _ in range(5):
        gateway.wake_anchorer()
        time.sleep(0.1)
    assert gateway.queries.anchors() == [first]
    assert gateway.queries.log_size() == 2
    st = status(gateway)
    assert (st.anchored_size, st.lag_entries, st.lag_seconds, st.anchors) == (1, 0, 0.0, 1)
    # Nor does a direct attempt anchor (or log) anything.
    assert gateway.anchor_now() is None
    assert gateway.queries.log_size() == 2

    # A real entry is anchored again, with the earlier anchor entry under the new root.
    append(gateway, 1)
    gateway.wake_anchorer()
    wait_for(lambda: len(gateway.queries.anchors()) == 2, timeout=10.0)
    second = gateway.queries.anchors()[1]
    assert second.tree_size == 3 and second.root_hash == gateway.queries.root(3)
    assert_logged(gateway, second, 3)
    for _ in range(5):
        gateway.wake_anchorer()
        time.sleep(0.1)
    assert len(gateway.queries.anchors()) == 2
    assert [i for i, _ in anchor_entries(gateway)] == [1, 3]
    assert gateway.queries.log_size() == 4


def test_an_anchor_recorded_twice_is_logged_once(
    embedded: AnchorerFactory, sqlite_gateway: Gateway
) -> None:
    # A replica that anchored the same checkpoint (or an attempt whose answer was lost)
    # records it again: the stored anchor is returned and nothing new is logged.
    anchorer = embedded()
    append(sqlite_gateway, 2)
    record = anchorer.anchor_now()
    assert record is not None and record.tree_size == 2
    size = sqlite_gateway.queries.log_size()
    assert anchorer.chain is not None
    receipt = anchorer.chain.anchor(record.tree_size, record.root_hash)
    assert receipt.already_anchored and receipt.tx_hash == record.tx_hash
    assert sqlite_gateway.commands.record_anchor(receipt) == record
    assert sqlite_gateway.queries.log_size() == size
    assert sqlite_gateway.queries.anchors() == [record]
    assert [i for i, _ in anchor_entries(sqlite_gateway)] == [2]
    assert anchorer.anchor_now() is None  # nothing left to anchor


def test_checkpoint_lists_its_anchors(anchoring: GatewayFactory) -> None:
    gateway = anchoring()
    client = TestClient(create_app(gateway, close_on_shutdown=False))
    gateway.commands.put_principal("aud", ["auditor"], {}, TEST_ACTOR)
    headers = auth(gateway.commands.issue_token("aud", "auditor", TEST_ACTOR).token)
    append(gateway, 10)
    record = gateway.anchor_now()
    assert record is not None and record.tree_size == 12
    assert gateway.anchor_now() is None  # nothing new to anchor
    assert_logged(gateway, record, 12)

    # The head includes the anchor's own entry, which no anchor can cover; the anchor of
    # everything before it is listed.
    head = client.get("/v1/ledger/checkpoint", headers=headers).json()
    assert head["tree_size"] == 13
    assert [a["tree_size"] for a in head["anchors"]] == [12]
    assert head["anchors"][0]["root_hash"] == gateway.queries.root(12).hex()
    assert head["anchors"][0]["tx_hash"] == record.tx_hash

    append(gateway, 1)
    assert client.get("/v1/ledger/checkpoint", headers=headers).json()["anchors"] == []


def test_verify_checks_the_anchors_on_the_chain(anchoring: GatewayFactory) -> None:
    gateway = anchoring()
    append(gateway, 12)
    record = gateway.anchor_now()
    assert record is not None and record.tree_size == 12
    append(gateway, 1)

    bundle = gateway.queries.bundle(gateway.operator)
    assert [a.tree_size for a in bundle.anchors] == [12]
    reader = open_chain(gateway.settings, read_only=True)
    try:
        report = verify_bundle(bundle, reader)
        assert report.anchors == report.anchors_on_chain == 1
        # An operator rewrites entry 4 and re-signs everything with its own key: every offline
        # check still passes, the chain does not.
        forged = forge_history(bundle, gateway.settings.keys_dir / "ledger.pem", 4)
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


@pytest.fixture
def down(down_settings: Settings) -> Iterator[tuple[Gateway, Anchorer]]:
    """A gateway whose anchorer (behind /metrics) cannot reach its chain, and one of the test's
    on the same chain with short backoff, polling every 10 ms."""
    gateway = Gateway.open(down_settings, anchor=True)
    try:
        with own_anchorers(gateway) as make:
            anchorer = make(
                every_entries=5,
                every_seconds=0.2,
                backoff_initial=0.05,
                backoff_max=0.4,
                poll_seconds=0.01,
            )
            anchorer.start()
            yield gateway, anchorer
    finally:
        gateway.close()


def test_chain_down_data_flows_and_the_lag_grows(down: tuple[Gateway, Anchorer]) -> None:
    gateway, anchorer = down
    started = time.perf_counter()
    append(gateway, 20)
    # Appends never wait on the chain: local and durable only.
    assert time.perf_counter() - started < 5
    assert gateway.queries.log_size() == 20
    wait_for(lambda: anchorer.status().failures >= 4, timeout=10.0)
    st = anchorer.status()
    assert st.chain_up is False and st.anchored_size == 0 and st.anchors == 0
    assert st.lag_entries == 20
    assert st.last_error is not None and "JSON-RPC node http://127.0.0.1" in st.last_error
    assert st.retry_in_seconds <= 0.4
    lag_before = st.lag_seconds
    time.sleep(1.0)
    st = anchorer.status()
    assert st.lag_seconds > lag_before + 0.9
    # Backoff: polling every 10 ms would have made ~100 attempts in this second; capped
    # exponential backoff (0.05 s doubling to 0.4 s, with jitter) makes a handful.
    assert 4 <= st.failures <= 20
    assert st.consecutive_failures == st.failures
    # A direct attempt says why, as the 503 kind of error.
    with pytest.raises(ChainUnavailable):
        anchorer.anchor_now()
    with pytest.raises(ChainUnavailable):
        gateway.anchor_now()
    # Nothing was anchored, so nothing but the 20 entries was logged.
    assert gateway.queries.anchors() == [] and gateway.queries.log_size() == 20


def test_entries_appended_while_backing_off_show_in_the_lag_at_once(
    down: tuple[Gateway, Anchorer],
) -> None:
    gateway, anchorer = down
    append(gateway, 20)
    wait_for(lambda: anchorer.status().failures >= 4, timeout=10.0)
    wait_for(lambda: status(gateway).failures >= 1, timeout=10.0)
    time.sleep(1.0)
    append(gateway, 5)
    # Both anchorers are backing off; the lag counts the new entries all the same.
    st = anchorer.status()
    assert st.lag_entries == 25 and st.lag_seconds > 1.0
    client = TestClient(create_app(gateway, close_on_shutdown=False))
    text = client.get("/metrics").text
    assert "govern_ledger_anchor_lag_entries 25.0" in text
    assert "govern_ledger_anchor_chain_up 0.0" in text
    lag = re.search(r"^govern_ledger_anchor_lag_seconds (\S+)$", text, re.MULTILINE)
    assert lag is not None and float(lag.group(1)) > 1.0


def test_backoff_is_exponential_capped_and_resets(
    embedded: AnchorerFactory, sqlite_gateway: Gateway
) -> None:
    anchorer = embedded(every_entries=1, every_seconds=1.0, backoff_initial=1.0, backoff_max=8.0)
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
    record = anchorer.anchor_now()
    assert record is not None
    st = anchorer.status()
    assert st.consecutive_failures == 0 and st.retry_in_seconds == 0 and st.chain_up
    assert sqlite_gateway.queries.anchors() == [record]
    assert_logged(sqlite_gateway, record, 1)


def test_serving_gateway_runs_the_anchorer(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path / "home", config=tmp_path / "none.toml", anchor_every_entries=3)
    upgrade(s.resolved_database_url)
    gateway = Gateway.open(s, anchor=True)
    try:
        assert status(gateway).anchors == 0
        append(gateway, 3)
        gateway.wake_anchorer()
        wait_for(lambda: len(gateway.queries.anchors()) == 1, timeout=10.0)
    finally:
        gateway.close()
    off = load_settings(home=tmp_path / "h2", config=tmp_path / "none.toml", chain_backend="none")
    upgrade(off.resolved_database_url)
    quiet = Gateway.open(off, watch=True)
    try:
        assert quiet.queries.anchor_status() is None
        with pytest.raises(ConfigError):
            quiet.anchor_now()
    finally:
        quiet.close()
