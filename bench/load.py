"""Benchmark: REST decisions under load, govern against the peer a user would write instead.

- govern: ``govern serve`` over the demo; every decision resolves the caller's token and the
  subject, compiles (cached) the Plan and is durable in the access log before it is answered.
- peer: FastAPI and pycasbin, one ``enforce`` per request (``bench/peer_casbin.py``), nothing
  logged.

Both run as their own process on loopback; the same asyncio client drives each with 1, 8 and 32
concurrent keep-alive connections for a fixed time. Afterwards the log must hold exactly one
decision entry per decision govern acknowledged. One run, one JSON line (bench/results/load.json).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from report import emit
from sqlalchemy import func, select

from govern.store import Database
from govern.store.models import LedgerEntry

HERE = Path(__file__).resolve().parent
BODY = {
    "action": "read",
    "resource": {"dataset": "patient_notes"},
    "context": {"purpose": "training"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, path: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def drive(url: str, token: str | None, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` connections, each sending decisions back to back for ``seconds``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors = 0
    acknowledged = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
        for _ in range(20):  # warm-up: connections, the first compile
            (await c.post("/v1/decisions", json=BODY)).raise_for_status()
        deadline = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal errors, acknowledged
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await c.post("/v1/decisions", json=BODY)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json()["decision"] != "allow":
                    errors += 1
                else:
                    acknowledged += 1

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "errors": errors,
        "acknowledged": acknowledged + 20,
    }


def start_govern(home: Path) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
    govern = str(Path(sys.executable).with_name("govern"))
    env = {
        **os.environ,
        "GOVERN_HOME": str(home),
        "GOVERN_CONFIG": str(home / "none.toml"),
        "GOVERN_LLM_BACKEND": "none",
        "GOVERN_JOBS_BACKEND": "none",
        "GOVERN_LOG_LEVEL": "warning",
    }
    subprocess.run([govern, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [govern, "demo", "load", "--scale", "0.1"], env=env, check=True, capture_output=True
    )
    port = free_port()
    proc = subprocess.Popen(
        [govern, "serve", "--port", str(port), "--flight-port", str(free_port())], env=env
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, "/readyz")
    token = subprocess.run(
        [govern, "token", "create", "--subject", "demo-trainer", "--role", "trainer"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return proc, url, token, env


def start_peer() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "peer_casbin.py"), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, "/docs")
    return proc, url


def logged_decisions(home: Path) -> int:
    db = Database(f"sqlite:///{home / 'govern.db'}")
    try:
        with db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(LedgerEntry)
                    .where(LedgerEntry.kind == "decision", LedgerEntry.actor == "demo-trainer")
                )
                or 0
            )
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per client count and side")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    result: dict[str, Any] = {"bench": "load", "cpus": os.cpu_count(), "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        govern, govern_url, token, _ = start_govern(home)
        peer, peer_url = start_peer()
        try:
            acknowledged = 0
            for n in counts:
                ours = asyncio.run(drive(govern_url, token, n, args.seconds))
                theirs = asyncio.run(drive(peer_url, None, n, args.seconds))
                acknowledged += ours.pop("acknowledged")
                theirs.pop("acknowledged")
                result[f"clients_{n}"] = {
                    "govern": ours,
                    "fastapi_pycasbin": theirs,
                    "throughput_ratio": round(ours["per_s"] / theirs["per_s"], 3),
                    "p99_ratio": round(ours["p99_ms"] / theirs["p99_ms"], 2),
                }
        finally:
            for proc in (govern, peer):
                proc.terminate()
                proc.wait(timeout=30)
        logged = logged_decisions(home)
        # Every acknowledged decision is in the log, once (invariant 2).
        result["acknowledged"] = acknowledged
        result["logged"] = logged
        result["log_complete"] = logged == acknowledged
    emit("load", result)


if __name__ == "__main__":
    main()
