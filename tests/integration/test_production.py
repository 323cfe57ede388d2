"""Production mode, as docs/production.md deploys it, on loopback: one govern.toml in
``mode = "production"``, the PostgreSQL store, two `govern serve` replicas sharing it, a real
JSON-RPC chain node (npm ganache) and a real Ray cluster for jobs.

What it proves: a policy change saved on one replica is enforced by the other (through the
store's NOTIFY: the poll interval is set far longer than the bound), with the propagation time
of every change measured and printed; decisions and Flight reads work on both; an erasure
asked of one replica runs its retrain job on Ray, reading through Flight, and completes; the
log, anchored on the chain by the replicas, verifies with `govern ledger verify` against the
node.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import govern_connect
import httpx
import pytest

from govern.jobs.ray_local import local_ray_cluster
from govern.ledger.anchor.keys import create_chain_key
from tests.conftest import free_port, wait_for
from tests.integration.test_anchor_ganache import Ganache
from tests.integration.test_anchor_ganache import ganache_installed as ganache_installed
from tests.integration.test_jobs import reader_settings
from tests.integration.test_policy_replicas import wait_ready

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

GOVERN = str(Path(sys.executable).with_name("govern"))
CHANGES = 12
# The watcher's poll interval: a change must arrive by NOTIFY, well before the next poll.
POLL_SECONDS = 60
EXTRA = ["p", "r.sub.role == 'trainer'", "chat_logs", "read", "evaluation", "True", "allow"]


@dataclass
class Replica:
    url: str
    flight: str
    proc: subprocess.Popen[bytes]


@dataclass
class Deployment:
    env: dict[str, str]
    a: Replica
    b: Replica
    tokens: dict[str, str]
    work: Path
    home: Path

    def govern(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GOVERN, *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def toml(values: dict[str, object]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with local_ray_cluster() as address:
        yield address


@pytest.fixture
def deployment(
    postgres_url: str, ray_address: str, ganache_installed: None, tmp_path: Path
) -> Iterator[Deployment]:
    home = tmp_path / "home"
    account = create_chain_key(home / "keys" / "chain.key")
    node = Ganache(free_port(), account.key.to_0x_hex())
    work = reader_settings(tmp_path / "work")
    config = tmp_path / "govern.toml"
    config.write_text(
        toml(
            {
                "mode": "production",
                "database_url": postgres_url,
                "signing_secret": secrets.token_hex(32),
                "commitment_key": secrets.token_hex(32),
                "chain_rpc_url": node.url,
                "anchor_every_entries": 20,
                "anchor_every_seconds": 1,
                "jobs_backend": "ray",
                "jobs_ray_address": ray_address,
                "jobs_poll_seconds": 0.5,
                "jobs_retry_seconds": 1,
                "policy_poll_seconds": POLL_SECONDS,
                "unlearning_workdir": str(work["unlearning_workdir"]),
                "unlearning_trainers": work["unlearning_trainers"],
                "llm_backend": "none",
                "log_level": "warning",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")}
    env |= {"GOVERN_CONFIG": str(config), "GOVERN_HOME": str(home)}
    replicas: list[Replica] = []
    try:
        for args in (["db", "upgrade"], ["demo", "load", "--scale", "0.02"], ["ledger", "anchor"]):
            done = subprocess.run([GOVERN, *args], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        tokens = {}
        for pid, role in [
            ("demo-steward", "steward"),
            ("demo-trainer", "trainer"),
            ("demo-compliance", "compliance"),
            ("demo-auditor", "auditor"),
        ]:
            done = subprocess.run(
                [GOVERN, "token", "create", "--subject", pid, "--role", role],
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            tokens[role] = done.stdout.strip()
        for _ in range(2):
            port, flight = free_port(), free_port()
            proc = subprocess.Popen(
                [GOVERN, "serve", "--port", str(port), "--flight-port", str(flight)],
                env={**env, "GOVERN_JOBS_FLIGHT_URL": f"grpc://127.0.0.1:{flight}"},
            )
            replicas.append(Replica(f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{flight}", proc))
        for r in replicas:
            wait_ready(r.url, r.proc)
        yield Deployment(env, replicas[0], replicas[1], tokens, tmp_path, home)
    finally:
        for r in replicas:
            r.proc.terminate()
        for r in replicas:
            r.proc.wait(timeout=30)
        node.stop()


def decide(url: str, headers: dict[str, str], dataset: str, purpose: str) -> dict[str, object]:
    body = {"resource": {"dataset": dataset}, "context": {"purpose": purpose}}
    r = httpx.post(f"{url}/v1/decisions", json=body, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    plan: dict[str, object] = r.json()
    return plan


def test_two_production_replicas_share_policy_reads_erasure_jobs_and_an_anchored_log(
    deployment: Deployment,
) -> None:
    d = deployment
    steward, trainer = d.headers("steward"), d.headers("trainer")

    # 1. Policy changes saved on a are enforced by b, each within the NOTIFY path's time.
    base = httpx.get(f"{d.a.url}/v1/policies", headers=steward).json()["rules"]
    waits = []
    for i in range(CHANGES):
        add = i % 2 == 0
        rules = [*base, EXTRA] if add else base
        r = httpx.put(f"{d.a.url}/v1/policies", json={"rules": rules}, headers=steward)
        assert r.status_code == 200, r.text
        saved = time.monotonic()
        want = "allow" if add else "deny"
        deadline = saved + POLL_SECONDS / 2
        while decide(d.b.url, trainer, "chat_logs", "evaluation")["decision"] != want:
            assert time.monotonic() < deadline, f"change {i} not enforced by the other replica"
            time.sleep(0.005)
        waits.append(time.monotonic() - saved)
    waits.sort()
    p99 = waits[min(len(waits) - 1, round(0.99 * (len(waits) - 1)))]
    print(
        f"policy propagation over {CHANGES} changes: p50 {statistics.median(waits) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms"
    )

    # 2. Decisions on both replicas are logged; a trainer reads through b's Flight server.
    for replica in (d.a, d.b):
        plan = decide(replica.url, trainer, "patient_notes", "training")
        assert plan["decision"] == "allow" and isinstance(plan["log_index"], int)
    client = govern_connect.connect(d.b.flight, d.tokens["trainer"])
    table = client.read("patient_notes", purpose="training", run_id="run-prod")
    assert table.num_rows > 0
    output = d.work / "retrained.json"
    recipe = {
        "trainer": "reader.py",
        "datasets": [{"name": "patient_notes", "version": 1}],
        "purpose": "training",
        "output": str(output),
    }
    r = httpx.put(f"{d.a.url}/v1/runs/run-prod/recipe", json=recipe, headers=trainer)
    assert r.status_code == 200, r.text

    # 3. An erasure asked of a: the retrain job runs on Ray, reads through Flight, completes.
    # The trainer sees patient ids hashed; the file says whose each row is.
    path = d.home / "datasets" / "patient_notes" / "v1.parquet"
    rows = duckdb.sql(f"SELECT _row_id, patient_id FROM read_parquet('{path}')").fetchall()
    owner = {int(i): str(p) for i, p in rows}
    subject = owner[table.column("_row_id")[0].as_py()]
    officer = d.headers("compliance")
    r = httpx.post(
        f"{d.a.url}/v1/erasure-requests",
        json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
        headers=officer,
    )
    assert r.status_code == 202, r.text
    rid = r.json()["id"]

    def state() -> str:
        got = httpx.get(f"{d.b.url}/v1/erasure-requests/{rid}", headers=officer).json()
        return str(got["state"])

    wait_for(lambda: state() in ("completed", "failed"), 240)
    assert state() == "completed"
    jobs = httpx.get(f"{d.a.url}/v1/jobs", headers=officer).json()
    (job,) = [j for j in jobs if j["request_id"] == rid]
    assert job["backend"] == "ray" and job["state"] == "succeeded"
    # The job trains a new run and writes where its argv says (next to the recipe's output).
    argv = job["argv"]
    retrained = json.loads(Path(argv[argv.index("--output") + 1]).read_text())["ids"]
    assert retrained and subject not in {owner[i] for i in retrained}

    # 4. The log is anchored on the node by the replicas and verifies against it.
    def metric(replica: Replica, name: str) -> float:
        for line in httpx.get(f"{replica.url}/metrics").text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return float("inf")

    wait_for(lambda: metric(d.a, "govern_ledger_anchor_lag_entries") == 0, 60)
    # The replicas share one chain key and take turns: no attempt failed on a nonce race.
    for replica in (d.a, d.b):
        assert metric(replica, "govern_ledger_anchor_failures_total") == 0
    assert sum(metric(r, "govern_ledger_anchors_total") for r in (d.a, d.b)) >= 2
    verified = d.govern("ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "anchor" in (verified.stdout + verified.stderr).lower()
