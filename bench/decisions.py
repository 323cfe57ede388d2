"""Benchmark: policy decisions over REST, and compiled row filtering versus per-row Casbin.

One run, side by side, one JSON line on stdout (also written to bench/results/decisions.json):
  (a) REST decisions/s and p50/p99 latency against a set of 10k row rules, through a real
      `govern serve` on loopback;
  (b) rows/s selecting the permitted rows of a 1M-row dataset: govern's compiled DuckDB SQL
      versus the peer approach, casbin.Enforcer.enforce once per row (timed on a sample, since
      at ~10k rows/s the full million would take minutes; rows/s is what is compared).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
from report import emit

from govern.catalog import ROW_ID
from govern.demo.load import DEMO_PRINCIPALS
from govern.engine import Engine
from govern.gateway import DecisionRequest, Gateway
from govern.policy.compiler import casbin_request
from govern.policy.files import read_rules
from govern.policy.service import default_model_text
from govern.resources import policies_dir
from govern.settings import load_settings
from govern.store.migrate import upgrade

ROWS = 1_000_000
RULES = 10_000
REST_REQUESTS = 2_000
PEER_SAMPLE = 20_000
ACTOR = "bench"  # who the setup's changes are logged as


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def patients(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "patient_id": pa.array([f"P{i:07d}" for i in rng.integers(0, n // 3, n)]),
            "region": pa.array(rng.choice(["eu", "us", "apac"], n).tolist()),
            "age": pa.array(rng.integers(0, 100, n), pa.int64()),
            "consent_research": pa.array((rng.random(n) < 0.7).tolist()),
            "score": pa.array(rng.random(n)),
        }
    )


def many_rules(n: int) -> list[list[str]]:
    """The demo rules plus n filler rules for other datasets, roles and purposes."""
    rules = read_rules(policies_dir() / "demo.csv")
    for i in range(n - len(rules)):
        rules.append(
            [
                "p",
                f"r.sub.role == 'team{i % 50}'",
                f"dataset_{i % 400}",
                "read",
                f"purpose_{i % 7}",
                f"r.obj.age > {i % 90}",
                "allow" if i % 5 else "deny",
            ]
        )
    return rules


def rest_bench(home: Path, env: dict[str, str]) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("govern")), "serve", "--port", str(port)],
        env={**env, "GOVERN_LOG_LEVEL": "warning"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = subprocess.run(
            [
                str(Path(sys.executable).with_name("govern")),
                "token",
                "create",
                "--subject",
                "demo-trainer",
                "--role",
                "trainer",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        body = {
            "action": "read",
            "resource": {"dataset": "patient_notes"},
            "context": {"purpose": "training"},
        }
        latencies = []
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
            for _ in range(50):  # warm-up: first compile, connection
                client.post(f"{url}/v1/decisions", json=body).raise_for_status()
            start = time.perf_counter()
            for _ in range(REST_REQUESTS):
                t0 = time.perf_counter()
                r = client.post(f"{url}/v1/decisions", json=body)
                latencies.append(time.perf_counter() - t0)
                assert r.json()["decision"] == "allow"
            elapsed = time.perf_counter() - start
        q = statistics.quantiles(latencies, n=100)
        return {
            "rest_decisions_per_s": REST_REQUESTS / elapsed,
            "rest_p50_ms": q[49] * 1000,
            "rest_p99_ms": q[98] * 1000,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def filter_bench(gateway: Gateway) -> dict[str, float]:
    info = gateway.queries.dataset("patient_notes")
    issued = gateway.commands.issue_token("demo-trainer", "trainer", ACTOR)
    caller = gateway.decider.authenticate(issued.token)
    plan = gateway.decider.decide(
        caller, DecisionRequest(dataset="patient_notes", purpose="training")
    )
    # The gateway's engine is private: the same engine (default settings, as Gateway.open
    # builds it), of our own, runs the Plan's compiled SQL.
    engine = Engine()
    try:
        start = time.perf_counter()
        selected = engine.table(info, plan).num_rows
        sql_s = time.perf_counter() - start
    finally:
        engine.close()

    # The peer: the same model and rules, one enforce() per row (rules of the demo set only,
    # which is kinder to the peer than 10k).
    from govern.policy.compiler import build_enforcer

    enforcer = build_enforcer(default_model_text(), read_rules(policies_dir() / "demo.csv"))
    subject = {**caller.principal.attributes, "id": caller.id, "role": "trainer"}
    sample = duckdb.sql(f"SELECT * FROM read_parquet('{info.path}') LIMIT {PEER_SAMPLE}").fetchall()
    names = [c.name for c in info.columns] + [ROW_ID]
    start = time.perf_counter()
    allowed = 0
    for values in sample:
        sub, obj = casbin_request(subject, info.name, dict(zip(names, values, strict=True)))
        with contextlib.suppress(Exception):
            allowed += bool(enforcer.enforce(sub, obj, "read", "training"))
    peer_s = time.perf_counter() - start
    sql_rps = ROWS / sql_s
    peer_rps = len(sample) / peer_s
    return {
        "rows": ROWS,
        "rows_selected": selected,
        "sql_seconds": sql_s,
        "sql_rows_per_s": sql_rps,
        "peer_sample_rows": len(sample),
        "peer_rows_per_s": peer_rps,
        "peer_projected_seconds_1m": ROWS / peer_rps,
        "speedup": sql_rps / peer_rps,
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["all", "rest", "filter"], default="all")
    part = parser.parse_args().part
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {
            **os.environ,
            "GOVERN_HOME": str(home),
            "GOVERN_SIGNING_SECRET": secrets.token_urlsafe(40),
            "GOVERN_CONFIG": str(home / "none.toml"),
        }
        settings = load_settings(
            home=home, signing_secret=env["GOVERN_SIGNING_SECRET"], config=home / "none.toml"
        )
        upgrade(settings.resolved_database_url)
        gateway = Gateway.open(settings)
        for p in DEMO_PRINCIPALS:
            gateway.commands.put_principal(p.id, list(p.roles), p.attributes, ACTOR)
        rows = ROWS if part != "rest" else 10_000
        gateway.commands.register_dataset("patient_notes", patients(rows), "patient_id", ACTOR)
        gateway.commands.put_policy(default_model_text(), many_rules(RULES), ACTOR)
        filtering = filter_bench(gateway) if part != "rest" else {}
        gateway.close()
        rest = rest_bench(home, env) if part != "filter" else {}
    result: dict[str, object] = {
        "bench": "decisions",
        "part": part,
        "rules": RULES,
        **rest,
        **filtering,
    }
    if filtering:
        result["goal_speedup_1000x"] = filtering["speedup"] >= 1000
    if rest:
        result["goal_p99_under_5ms"] = rest["rest_p99_ms"] < 5
    emit("decisions", result)


if __name__ == "__main__":
    main()
