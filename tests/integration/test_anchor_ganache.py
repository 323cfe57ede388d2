"""Anchoring on a real Ethereum JSON-RPC node: npm ganache, started by the test on 127.0.0.1
with the gateway's own chain key funded, then stopped. In CI a missing ganache fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from govern.gateway import Gateway
from govern.gateway.commands import ANCHOR_ACTOR
from govern.ledger.anchor import Anchorer, AnchorRecords, open_chain
from govern.ledger.anchor.keys import create_chain_key
from govern.ledger.checkpoint import verify_checkpoint
from govern.ledger.service import Ledger
from govern.ledger.verify import Bundle, LedgerVerificationError, verify_bundle
from govern.settings import Settings, load_settings
from govern.store import Database
from govern.store.migrate import upgrade
from tests.conftest import IN_CI, free_port, wait_for
from tests.ledger_forgery import forge_history

REPO = Path(__file__).resolve().parents[2]
GANACHE = REPO / "node_modules" / ".bin" / "ganache"
GOVERN = str(Path(sys.executable).with_name("govern"))
CHAIN_ID = 1337
ACTOR = "tester"


class Ganache:
    """One ganache process on a loopback port, funding one private key."""

    def __init__(self, port: int, private_key: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                str(GANACHE),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain.chainId",
                str(CHAIN_ID),
                "--wallet.accounts",
                f"{private_key},{10**21}",
                "--logging.quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ganache exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("ganache did not answer within 30 s")
            time.sleep(0.1)

    def _answers(self) -> bool:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        try:
            return httpx.post(self.url, json=body, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ganache_installed() -> None:
    if not GANACHE.exists():
        message = f"{GANACHE} is missing; `make contracts` installs it (npm ci)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def rpc_settings(home: Path, url: str) -> Settings:
    return load_settings(
        home=home,
        config=home / "none.toml",
        chain_rpc_url=url,
        anchor_every_entries=5,
        anchor_every_seconds=0.3,
    )


@pytest.fixture
def node(ganache_installed: None, tmp_path: Path) -> Iterator[tuple[Settings, Ganache]]:
    home = tmp_path / "home"
    key_file = home / "keys" / "chain.key"
    account = create_chain_key(key_file)
    ganache = Ganache(free_port(), account.key.to_0x_hex())
    settings = rpc_settings(home, ganache.url)
    upgrade(settings.resolved_database_url)
    yield settings, ganache
    ganache.stop()


def changes(gateway: Gateway, n: int) -> None:
    """``n`` changes through the command layer, each logged with ``ACTOR``."""
    for i in range(n):
        gateway.commands.put_principal(f"p{i}", ["trainer"], {"i": i}, ACTOR)


def govern(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GOVERN_HOME": str(settings.home),
        "GOVERN_CONFIG": str(settings.config),
        "GOVERN_CHAIN_RPC_URL": str(settings.chain_rpc_url),
    }
    env.pop("GOVERN_DATABASE_URL", None)
    return subprocess.run(
        [GOVERN, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_anchor_on_ganache_then_verify(node: tuple[Settings, Ganache], tmp_path: Path) -> None:
    settings, ganache = node
    gateway = Gateway.open(settings, anchor=True)
    try:
        changes(gateway, 12)
        # Each anchor is itself logged (ledger.anchor); those entries never call for another
        # anchor, so the last anchor covers the log up to the last of the 12 changes.
        mine = gateway.queries.ledger_entries(gateway.operator, actor=ACTOR)
        assert len(mine) == 12
        size = mine[-1].index + 1

        def anchored() -> bool:
            status = gateway.queries.anchor_status()
            assert status is not None
            return status.anchored_size == size

        wait_for(anchored)
        records = gateway.queries.anchors()
        assert records[-1].tree_size == size
        assert {r.chain_id for r in records} == {CHAIN_ID}
        assert all(r.tx_hash.startswith("0x") and r.block_number >= 2 for r in records)
        logged = gateway.queries.ledger_entries(gateway.operator, kind="ledger.anchor")
        assert [e.entry["data"]["tree_size"] for e in logged] == [r.tree_size for r in records]
        assert {e.entry["actor"] for e in logged} == {ANCHOR_ACTOR}
        # A signed checkpoint at the anchored size, over the log's own root there.
        vkey = gateway.queries.verifier_key()["vkey"]
        notes = gateway.queries.bundle(gateway.operator).checkpoints
        signed = {c.tree_size: c.root_hash for c in (verify_checkpoint(n, vkey) for n in notes)}
        root = gateway.queries.root(size)
        assert signed[size] == root == records[-1].root_hash
    finally:
        gateway.close()

    # The contract on the node holds the signed checkpoint's root.
    reader = open_chain(settings, read_only=True)
    try:
        assert reader.chain_id == CHAIN_ID
        assert reader.lookup(size, records[-1].contract_address) == root
    finally:
        reader.close()

    # `govern ledger verify` checks every anchor on the node.
    r = govern(settings, "ledger", "verify")
    assert r.returncode == 0, r.stderr
    assert f"anchors OK: {len(records)} of {len(records)} anchors" in r.stdout
    assert f"JSON-RPC node http://127.0.0.1:{ganache.port} (chain id {CHAIN_ID})" in r.stdout

    # An exported bundle verifies offline (chain skipped, and said so) or against the node.
    exported = tmp_path / "bundle.json"
    assert govern(settings, "ledger", "export", str(exported)).returncode == 0
    r = govern(settings, "ledger", "verify", "--bundle", str(exported))
    assert r.returncode == 0 and "chain check skipped (offline bundle)" in r.stdout
    r = govern(settings, "ledger", "verify", "--bundle", str(exported), "--rpc-url", ganache.url)
    assert r.returncode == 0 and "anchors OK" in r.stdout

    # History rewritten and re-signed by the operator: only the chain catches it.
    forged = forge_history(Bundle.read(exported), settings.keys_dir / "ledger.pem", 3)
    forged_path = tmp_path / "forged.json"
    forged.write(forged_path)
    assert govern(settings, "ledger", "verify", "--bundle", str(forged_path)).returncode == 0
    r = govern(settings, "ledger", "verify", "--bundle", str(forged_path), "--rpc-url", ganache.url)
    assert r.returncode == 1
    assert "ledger verification FAILED" in r.stderr and "anchor MISMATCH" in r.stderr


def test_chain_down_then_back(ganache_installed: None, tmp_path: Path) -> None:
    home = tmp_path / "home"
    account = create_chain_key(home / "keys" / "chain.key")
    port = free_port()
    settings = rpc_settings(home, f"http://127.0.0.1:{port}")
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    # An anchorer with a fast backoff, beside the gateway as a replica's would be: its own
    # handle on the store and the log, recording its anchors through the gateway's command.
    store = Database(settings.resolved_database_url, guarded=True)
    ledger = Ledger(store, settings.keys_dir / "ledger.pem", settings.ledger_origin)
    anchorer = Anchorer(
        lambda: ledger,
        lambda: open_chain(settings),
        AnchorRecords(store),
        record=gateway.commands.record_anchor,
        every_entries=5,
        every_seconds=0.3,
        backoff_initial=0.1,
        backoff_max=0.5,
        poll_seconds=0.02,
    )
    ganache: Ganache | None = None
    try:
        anchorer.start()
        changes(gateway, 6)
        wait_for(lambda: anchorer.status().failures >= 2)
        assert anchorer.status().lag_entries == 6
        assert gateway.queries.anchors() == []
        ganache = Ganache(port, account.key.to_0x_hex())  # the node comes up
        wait_for(lambda: anchorer.status().anchored_size == 6)
        st = anchorer.status()
        assert st.chain_up and st.lag_entries == 0 and st.consecutive_failures == 0
        # The anchor was recorded with its event, which calls for no further anchor.
        (logged,) = gateway.queries.ledger_entries(gateway.operator, kind="ledger.anchor")
        assert logged.index == 6 and logged.entry["data"]["tree_size"] == 6
        assert gateway.queries.log_size() == 7
        assert anchorer.status().lag_entries == 0 and anchorer.anchor_now() is None
        bundle = gateway.queries.bundle(gateway.operator)  # anchors included
        assert [a.tree_size for a in bundle.anchors] == [6]
        chain = open_chain(settings, read_only=True)
        try:
            assert verify_bundle(bundle, chain).anchors_on_chain == 1
            bundle.anchors = [
                type(a)(**{**a.__dict__, "root_hash": bytes(32)}) for a in bundle.anchors
            ]
            with pytest.raises(LedgerVerificationError):
                verify_bundle(bundle, chain)
        finally:
            chain.close()
    finally:
        anchorer.stop()
        ledger.close()
        store.dispose()
        gateway.close()
        if ganache is not None:
            ganache.stop()
