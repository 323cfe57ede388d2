"""The chain node (ganache) stopped under a serving gateway: data keeps flowing, anchoring
retries with the lag visible in /metrics, and catches up once the node is back."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from govern.ledger.anchor.keys import create_chain_key
from tests.conftest import free_port, wait_for
from tests.faults.conftest import ALLOWED, GovernServer, prepare

GANACHE = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "ganache"


class Node:
    """ganache on a fixed loopback port with its chain kept on disk, so a stop and a start
    give back the same chain (and the anchors already on it)."""

    def __init__(self, folder: Path, private_key: str) -> None:
        self.folder, self.key, self.port = folder, private_key, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(GANACHE), "--host", "127.0.0.1", "--port", str(self.port),
                "--chain.chainId", "1337", "--wallet.accounts", f"{self.key},{10**21}",
                "--database.dbPath", str(self.folder), "--logging.quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self._answers, 60, "ganache answering")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def _answers(self) -> bool:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        try:
            return httpx.post(self.url, json=body, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def _metrics(server: GovernServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(govern_ledger_\w+) ([-+\d.e]+)$", text, re.MULTILINE)
    }


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Node, GovernServer]]:
    if not GANACHE.exists():
        message = f"{GANACHE} is missing; `make contracts` installs it (npm ci)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    home = tmp_path / "home"
    account = create_chain_key(home / "keys" / "chain.key")
    node = Node(tmp_path / "chain-db", account.key.to_0x_hex())
    node.start()
    server = prepare(
        home,
        GOVERN_CHAIN_RPC_URL=node.url,
        GOVERN_ANCHOR_EVERY_ENTRIES="5",
        GOVERN_ANCHOR_EVERY_SECONDS="0.3",
    )
    try:
        yield node, server
    finally:
        server.halt()
        node.stop()


def test_decisions_flow_while_the_chain_is_down_and_anchoring_catches_up(
    node: tuple[Node, GovernServer],
) -> None:
    chain, server = node
    server.start()
    headers = server.headers(server.trainer)

    def decide(n: int) -> None:
        for _ in range(n):
            r = httpx.post(f"{server.url}/v1/decisions", json=ALLOWED, headers=headers)
            assert r.status_code == 200 and r.json()["decision"] == "allow", r.text

    decide(10)
    wait_for(
        lambda: _metrics(server).get("govern_ledger_anchors_total", 0) >= 1, 30, "first anchor"
    )

    chain.stop()
    decide(20)  # data flows while the chain is down
    wait_for(lambda: _metrics(server).get("govern_ledger_anchor_chain_up") == 0, 30, "chain_up 0")
    down = _metrics(server)
    assert down["govern_ledger_anchor_failures_total"] >= 1
    assert down["govern_ledger_anchor_lag_entries"] >= 20
    assert down["govern_ledger_anchor_lag_seconds"] > 0

    chain.start()
    # Backoff started at 1 s and doubles; the outage was short, so the retry comes soon.
    wait_for(lambda: _metrics(server).get("govern_ledger_anchor_chain_up") == 1, 60, "chain_up 1")
    wait_for(lambda: _metrics(server)["govern_ledger_anchor_lag_entries"] == 0, 30, "no lag")
    up = _metrics(server)
    assert up["govern_ledger_anchored_tree_size"] >= down["govern_ledger_tree_size"]
    verified = server.cli("ledger", "verify")  # anchors checked on the node
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(
        f"lag while down: {down['govern_ledger_anchor_lag_entries']:.0f} entries, "
        f"{down['govern_ledger_anchor_lag_seconds']:.2f} s; anchors after: "
        f"{up['govern_ledger_anchors_total']:.0f}"
    )
