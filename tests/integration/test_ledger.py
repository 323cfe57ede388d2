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
from govern.ledger.canonical import canonical_json
from govern.ledger.checkpoint import verify_checkpoint
from govern.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from govern.ledger.verify import Bundle, LedgerVerificationError, verify_bundle
from govern.store.models import LedgerEntry
from tests.conftest import TEST_ACTOR, auth, raw_store, serve_rest


@pytest.fixture
def demo(gateway: Gateway) -> Gateway:
    load_demo(gateway, scale=0.01)
    return gateway


def token(gateway: Gateway, subject: str, role: str) -> str:
    return gateway.commands.issue_token(subject, role, TEST_ACTOR).token


def decide(client: TestClient, headers: dict[str, str]) -> dict[str, object]:
    body = {"resource": {"dataset": "patient_notes"}, "context": {"purpose": "training"}}
    r = client.post("/v1/decisions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


def test_every_decision_is_a_log_entry_with_a_verifiable_proof(
    client: TestClient, demo: Gateway
) -> None:
    headers = auth(token(demo, "demo-trainer", "trainer"))
    plans = [decide(client, headers) for _ in range(5)]
    indexes = [p["log_index"] for p in plans]
    assert all(isinstance(i, int) for i in indexes)
    assert indexes == list(range(indexes[0], indexes[0] + 5))  # type: ignore[operator]

    head = client.get("/v1/ledger/checkpoint", headers=headers).json()
    key = client.get("/v1/ledger/key", headers=headers).json()
    checkpoint = verify_checkpoint(head["note"], key["vkey"])
    assert checkpoint.tree_size == head["tree_size"]
    assert checkpoint.root_hash.hex() == head["root_hash"]

    # The trainer reads its own decision entry (it is the entry's actor).
    index = indexes[2]
    entry = client.get(f"/v1/ledger/entries/{index}", headers=headers).json()
    leaf = base64.b64decode(entry["leaf"])
    assert set(entry["entry"]) == {"kind", "time", "actor", "object", "data"}
    assert entry["entry"]["kind"] == "decision"
    assert entry["entry"]["actor"] == "demo-trainer"
    assert entry["entry"]["object"] == "dataset:patient_notes"
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
    headers = auth(token(demo, "demo-admin", "admin"))
    client.put("/v1/principals/zed", json={"roles": ["trainer"]}, headers=headers)
    page = client.get("/v1/ledger/entries", params={"limit": 1000}, headers=headers).json()
    kinds = [e["entry"]["kind"] for e in page["entries"]]
    assert "policy.put" in kinds and "dataset.version" in kinds and "principal.put" in kinds
    (put,) = [e["entry"] for e in page["entries"] if e["entry"]["object"] == "principal:zed"]
    assert (put["kind"], put["actor"]) == ("principal.put", "demo-admin")
    assert put["data"]["roles"] == ["trainer"] and put["data"]["created"] is True


def test_the_log_is_least_privilege_for_readers_of_other_principals_entries(
    client: TestClient, demo: Gateway
) -> None:
    trainer = auth(token(demo, "demo-trainer", "trainer"))
    steward = auth(token(demo, "demo-steward", "steward"))
    auditor = auth(token(demo, "demo-auditor", "auditor"))
    admin = auth(token(demo, "demo-admin", "admin"))
    assert client.put("/v1/principals/zed", json={"roles": ["trainer"]}, headers=admin).is_success
    own = decide(client, trainer)["log_index"]
    assert isinstance(own, int)
    size = client.get("/v1/ledger/checkpoint", headers=trainer).json()["tree_size"]

    # The trainer reads its own decision entry and its inclusion proof.
    mine = client.get(f"/v1/ledger/entries/{own}", headers=trainer)
    assert mine.status_code == 200 and mine.json()["entry"]["actor"] == "demo-trainer"
    proof = client.get(
        f"/v1/ledger/entries/{own}/proof", params={"tree_size": size}, headers=trainer
    )
    assert proof.status_code == 200 and proof.json()["index"] == own

    # The admin's entry: the auditor finds it with the filters; trainer and steward may not
    # read it, nor the whole log.
    page = client.get(
        "/v1/ledger/entries", params={"object": "principal:zed"}, headers=auditor
    ).json()
    (admins,) = page["entries"]
    assert (admins["entry"]["actor"], admins["entry"]["kind"]) == ("demo-admin", "principal.put")
    theirs = admins["index"]
    for role, headers in (("trainer", trainer), ("steward", steward)):
        for path in (f"/v1/ledger/entries/{theirs}", "/v1/ledger/bundle"):
            r = client.get(path, headers=headers)
            assert r.status_code == 403, (role, path, r.text)
            assert set(r.json()) == {"error", "message", "details"}
            assert r.json()["error"] == "forbidden"
        # Listing shows only their own entries; asking for another's is refused.
        listed = client.get("/v1/ledger/entries", params={"limit": 1000}, headers=headers)
        assert listed.status_code == 200
        assert {e["entry"]["actor"] for e in listed.json()["entries"]} <= {f"demo-{role}"}
        r = client.get("/v1/ledger/entries", params={"actor": "demo-admin"}, headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        # Proofs, the checkpoint and the key stay open to every role.
        r = client.get(
            f"/v1/ledger/entries/{theirs}/proof", params={"tree_size": size}, headers=headers
        )
        assert r.status_code == 200
    listed = client.get("/v1/ledger/entries", params={"limit": 1000}, headers=trainer).json()
    assert own in [e["index"] for e in listed["entries"]]

    # The auditor reads both entries and the whole log.
    for index, actor in ((own, "demo-trainer"), (theirs, "demo-admin")):
        r = client.get(f"/v1/ledger/entries/{index}", headers=auditor)
        assert r.status_code == 200 and r.json()["entry"]["actor"] == actor
    bundle = client.get("/v1/ledger/bundle", headers=auditor)
    assert bundle.status_code == 200
    assert len(Bundle.from_json(bundle.json()).leaves) >= size

    # The auditor's filters: by actor, by kind, by object, and combined.
    def entries(**params: object) -> list[dict[str, object]]:
        r = client.get("/v1/ledger/entries", params={"limit": 1000, **params}, headers=auditor)
        assert r.status_code == 200, r.text
        listed: list[dict[str, object]] = r.json()["entries"]
        return listed

    by_actor = entries(actor="demo-trainer")
    assert own in [e["index"] for e in by_actor]
    assert {e["entry"]["actor"] for e in by_actor} == {"demo-trainer"}  # type: ignore[index]
    by_kind = entries(kind="principal.put")
    assert theirs in [e["index"] for e in by_kind]
    assert {e["entry"]["kind"] for e in by_kind} == {"principal.put"}  # type: ignore[index]
    assert [e["index"] for e in entries(kind="decision", actor="demo-admin")] == []
    both = entries(kind="decision", actor="demo-trainer", object="dataset:patient_notes")
    assert own in [e["index"] for e in both]
    assert entries(object="principal:nobody") == []


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
    headers = auth(token(demo, "demo-auditor", "auditor"))
    r = client.get(path, params=params, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "message", "details"}


def test_concurrent_decisions_get_distinct_contiguous_log_entries(demo: Gateway) -> None:
    caller = demo.decider.authenticate(token(demo, "demo-trainer", "trainer"))
    start = demo.queries.log_size()
    req = DecisionRequest(dataset="chat_logs", purpose="training")
    with ThreadPoolExecutor(16) as pool:
        indexes = list(pool.map(lambda _: demo.decider.decide(caller, req).log_index, range(200)))
    assert sorted(indexes) == list(range(start, start + 200))  # type: ignore[type-var]
    assert demo.queries.log_size() == start + 200


def test_verify_names_the_first_altered_entry(demo: Gateway, tmp_path: Path) -> None:
    caller = demo.decider.authenticate(token(demo, "demo-trainer", "trainer"))
    for _ in range(10):
        demo.decider.decide(caller, DecisionRequest(dataset="patient_notes", purpose="training"))
    demo.queries.checkpoint()
    report = verify_bundle(demo.queries.bundle(demo.operator))
    assert report.verified_size == report.entries > 10

    exported = tmp_path / "bundle.json"
    demo.queries.bundle(demo.operator).write(exported)
    assert verify_bundle(Bundle.read(exported)).entries == report.entries

    # An operator rewrites history: entry 7 now names another actor. No command can do this,
    # so the leaf is edited in the store directly.
    leaf = demo.queries.ledger_entry(demo.operator, 7).leaf
    forged = json.loads(leaf)
    forged["actor"] = "someone-else"
    store = raw_store(demo)
    try:
        with store.session() as s:
            s.execute(
                update(LedgerEntry).where(LedgerEntry.idx == 7).values(leaf=canonical_json(forged))
            )
    finally:
        store.dispose()
    with pytest.raises(LedgerVerificationError) as info:
        verify_bundle(demo.queries.bundle(demo.operator))
    assert info.value.first_bad_index == 7
    # The offline bundle taken before the edit still verifies.
    assert verify_bundle(Bundle.read(exported)).entries == report.entries


def test_verify_over_rest_checks_the_served_log_against_a_pinned_key(
    gateway: Gateway, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    load_demo(gateway, scale=0.01)
    with serve_rest(gateway) as url:
        auditor = token(gateway, "demo-auditor", "auditor")
        govern = str(Path(sys.executable).with_name("govern"))
        env = {**os.environ, "GOVERN_HOME": str(tmp_path / "auditor")}

        def verify(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    govern,
                    "ledger",
                    "verify",
                    "--url",
                    url,
                    "--token",
                    auditor,
                    "--no-chain",
                    *extra,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )

        good = verify("--vkey", gateway.queries.verifier_key()["vkey"])
        assert good.returncode == 0, good.stderr
        assert "ledger OK" in good.stdout
        other = verify("--vkey", "someone.else+00000000+AQ" + "A" * 42)
        assert other.returncode == 1 and "another key" in other.stderr
