"""The access log over both stores: decisions logged before they leave, proofs that verify,
tampering that `ledger verify` catches and names."""

from __future__ import annotations

import base64
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from govern.demo import load_demo
from govern.gateway import DecisionRequest, Gateway
from govern.ledger.checkpoint import verify_checkpoint
from govern.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from govern.ledger.verify import Bundle, LedgerVerificationError, verify_bundle
from govern.store.models import LedgerEntry
from tests.conftest import auth, free_port


@pytest.fixture
def demo(gateway: Gateway) -> Gateway:
    load_demo(gateway, scale=0.01)
    return gateway


def decide(client: TestClient, headers: dict[str, str]) -> dict[str, object]:
    body = {"resource": {"dataset": "patient_notes"}, "context": {"purpose": "training"}}
    r = client.post("/v1/decisions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


def test_every_decision_is_a_log_entry_with_a_verifiable_proof(
    client: TestClient, demo: Gateway
) -> None:
    headers = auth(demo.tokens.issue("demo-trainer", "trainer"))
    plans = [decide(client, headers) for _ in range(5)]
    indexes = [p["log_index"] for p in plans]
    assert all(isinstance(i, int) for i in indexes)
    assert indexes == list(range(indexes[0], indexes[0] + 5))  # type: ignore[operator]

    head = client.get("/v1/ledger/checkpoint", headers=headers).json()
    key = client.get("/v1/ledger/key", headers=headers).json()
    checkpoint = verify_checkpoint(head["note"], key["vkey"])
    assert checkpoint.tree_size == head["tree_size"]
    assert checkpoint.root_hash.hex() == head["root_hash"]

    index = indexes[2]
    entry = client.get(f"/v1/ledger/entries/{index}", headers=headers).json()
    leaf = base64.b64decode(entry["leaf"])
    assert entry["entry"]["kind"] == "decision"
    assert entry["entry"]["data"]["decision"] == "allow"
    assert entry["entry"]["data"]["subject"] == "demo-trainer"
    proof = client.get(
        f"/v1/ledger/entries/{index}/proof",
        params={"tree_size": head["tree_size"]},
        headers=headers,
    ).json()
    # RFC 6962 leaf hash computed here, independently of the server.
    assert leaf_hash(leaf) == hashlib.sha256(b"\x00" + leaf).digest()
    verify_inclusion(
        leaf_hash(leaf),
        index,
        head["tree_size"],
        [bytes.fromhex(h) for h in proof["hashes"]],
        checkpoint.root_hash,
    )

    decide(client, headers)
    head2 = client.get("/v1/ledger/checkpoint", headers=headers).json()
    cons = client.get(
        "/v1/ledger/consistency",
        params={"first": head["tree_size"], "second": head2["tree_size"]},
        headers=headers,
    ).json()
    verify_consistency(
        head["tree_size"],
        head2["tree_size"],
        bytes.fromhex(head["root_hash"]),
        bytes.fromhex(head2["root_hash"]),
        [bytes.fromhex(h) for h in cons["hashes"]],
    )


def test_admin_changes_are_logged(client: TestClient, demo: Gateway) -> None:
    headers = auth(demo.tokens.issue("demo-admin", "admin"))
    client.put("/v1/principals/zed", json={"roles": ["trainer"]}, headers=headers)
    page = client.get("/v1/ledger/entries", params={"limit": 1000}, headers=headers).json()
    kinds = [e["entry"]["kind"] for e in page["entries"]]
    assert "policy.put" in kinds and "dataset.version" in kinds and "principal.put" in kinds


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/ledger/entries/999999", {}, 404),
        ("/v1/ledger/entries/-1", {}, 422),
        ("/v1/ledger/entries/0/proof", {"tree_size": 10**9}, 404),
        ("/v1/ledger/entries/0/proof", {"tree_size": -3}, 422),
        ("/v1/ledger/consistency", {"first": 3, "second": 2}, 422),
        ("/v1/ledger/consistency", {"first": 1, "second": 10**9}, 404),
        ("/v1/ledger/consistency", {"first": "x", "second": 2}, 422),
    ],
)
def test_bad_ledger_queries_are_4xx_in_the_error_shape(
    client: TestClient, demo: Gateway, path: str, params: dict[str, object], status: int
) -> None:
    headers = auth(demo.tokens.issue("demo-auditor", "auditor"))
    r = client.get(path, params=params, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "message", "details"}


def test_concurrent_decisions_get_distinct_contiguous_log_entries(demo: Gateway) -> None:
    caller = demo.tokens.verify(demo.tokens.issue("demo-trainer", "trainer"))
    start = demo.ledger.size
    req = DecisionRequest(dataset="chat_logs", purpose="training")
    with ThreadPoolExecutor(16) as pool:
        indexes = list(pool.map(lambda _: demo.decide(caller, req).log_index, range(200)))
    assert sorted(indexes) == list(range(start, start + 200))  # type: ignore[type-var]
    assert demo.ledger.refresh() == start + 200


def test_verify_names_the_first_altered_entry(demo: Gateway, tmp_path: Path) -> None:
    caller = demo.tokens.verify(demo.tokens.issue("demo-trainer", "trainer"))
    for _ in range(10):
        demo.decide(caller, DecisionRequest(dataset="patient_notes", purpose="training"))
    demo.ledger.checkpoint()
    report = verify_bundle(demo.ledger.bundle())
    assert report.verified_size == report.entries > 10

    exported = tmp_path / "bundle.json"
    demo.ledger.bundle().write(exported)
    assert verify_bundle(Bundle.read(exported)).entries == report.entries

    # An operator rewrites history: entry 7 now says the decision was a deny.
    entry, leaf = demo.ledger.entry(7)
    forged = json.loads(leaf)
    forged["actor"] = "someone-else"
    from govern.ledger.canonical import canonical_json

    with demo.db.session() as s:
        s.execute(
            update(LedgerEntry).where(LedgerEntry.idx == 7).values(leaf=canonical_json(forged))
        )
    with pytest.raises(LedgerVerificationError) as info:
        verify_bundle(demo.ledger.bundle())
    assert info.value.first_bad_index == 7
    # The offline bundle taken before the edit still verifies.
    assert verify_bundle(Bundle.read(exported)).entries == report.entries
    del entry


def test_verify_over_rest_checks_the_served_log_against_a_pinned_key(
    gateway: Gateway, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import threading
    import time

    import uvicorn

    from govern.api import create_app

    load_demo(gateway, scale=0.01)
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
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        token = gateway.tokens.issue("demo-auditor", "auditor")
        govern = str(Path(sys.executable).with_name("govern"))
        env = {**os.environ, "GOVERN_HOME": str(tmp_path / "auditor")}

        def verify(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    govern,
                    "ledger",
                    "verify",
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--token",
                    token,
                    "--no-chain",
                    *extra,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )

        good = verify("--vkey", gateway.ledger.signer.vkey)
        assert good.returncode == 0, good.stderr
        assert "ledger OK" in good.stdout
        other = verify("--vkey", "someone.else+00000000+AQ" + "A" * 42)
        assert other.returncode == 1 and "another key" in other.stderr
    finally:
        server.should_exit = True
        thread.join(timeout=10)
