"""Benchmark: REST decisions under load, govern against the peer a user would write instead.

- govern: ``govern serve`` over the demo; every decision resolves the caller's token and the
  subject, compiles (cached) the Plan and is durable in the access log before it is answered.
- peer: FastAPI and pycasbin, one ``enforce`` per request (``bench/peer_casbin.py``), nothing
  logged.

Both run as their own process on loopback; the same asyncio client drives each with 1, 8 and 32
concurrent keep-alive connections for a fixed time. Then a mixed phase drives govern alone from
several client processes at once, some sending decisions over REST and some reading through
Arrow Flight (each read a new training run), for the same fixed time, and reports throughput,
p50/p99 and errors of each. Afterwards the log must hold exactly one decision entry per decision
govern acknowledged and one ``read`` and one ``read.end`` entry per read that returned its rows.
One run, one JSON line (bench/results/load.json).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import govern_connect
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


def decision_client(url: str, token: str, seconds: float, out: Any) -> None:
    """One process sending decisions back to back (a service asking the gateway)."""
    latencies, errors, acknowledged = [], 0, 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                r = c.post("/v1/decisions", json=BODY, timeout=30)
                ok = r.status_code == 200 and r.json()["decision"] == "allow"
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok
            acknowledged += ok
    out.put(("decisions", latencies, errors, acknowledged, 0, time.perf_counter() - start))


def read_client(location: str, token: str, seconds: float, name: str, out: Any) -> None:
    """One process reading a dataset through Flight again and again, each read its own run."""
    client = govern_connect.connect(location, token)
    latencies, errors, acknowledged, rows = [], 0, 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        t0 = time.perf_counter()
        try:
            table = client.read("chat_logs", purpose="training", run_id=f"load-{name}-{n}")
            rows += table.num_rows
            acknowledged += 1
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - t0)
    out.put(("reads", latencies, errors, acknowledged, rows, time.perf_counter() - start))


def mixed(
    url: str, location: str, token: str, seconds: float, deciders: int, readers: int
) -> dict[str, Any]:
    """Decision and read client processes at once; their results by kind."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=decision_client, args=(url, token, seconds, out))
        for _ in range(deciders)
    ] + [
        ctx.Process(target=read_client, args=(location, token, seconds, f"p{i}", out))
        for i in range(readers)
    ]
    for p in procs:
        p.start()
    got = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    result: dict[str, Any] = {"decision_processes": deciders, "read_processes": readers}
    for kind in ("decisions", "reads"):
        mine = [g for g in got if g[0] == kind]
        # Each process times its own loop (start-up excluded); rates add up across processes.
        rate = sum(len(g[1]) / g[5] for g in mine)
        q = statistics.quantiles([x for g in mine for x in g[1]], n=100)
        result[kind] = {
            "per_s": round(rate, 1),
            "p50_ms": round(q[49] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2),
            "errors": sum(g[2] for g in mine),
            "acknowledged": sum(g[3] for g in mine),
        }
        if kind == "reads":
            result[kind]["rows_per_s"] = round(sum(g[4] / g[5] for g in mine))
    return result


def start_govern(
    home: Path,
) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str], str]:
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
    port, flight = free_port(), free_port()
    proc = subprocess.Popen(
        [govern, "serve", "--port", str(port), "--flight-port", str(flight)], env=env
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
    return proc, url, token, env, f"grpc://127.0.0.1:{flight}"


def start_peer() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "peer_casbin.py"), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, "/docs")
    return proc, url


def logged(home: Path, kind: str) -> int:
    """Entries of ``kind`` the trainer's requests left in the log."""
    db = Database(f"sqlite:///{home / 'govern.db'}")
    try:
        with db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(LedgerEntry)
                    .where(LedgerEntry.kind == kind, LedgerEntry.actor == "demo-trainer")
                )
                or 0
            )
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="per client count and side")
    parser.add_argument("--deciders", type=int, default=2, help="decision processes, mixed phase")
    parser.add_argument("--readers", type=int, default=2, help="Flight read processes, mixed phase")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    result: dict[str, Any] = {"bench": "load", "cpus": os.cpu_count(), "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        govern, govern_url, token, _, location = start_govern(home)
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
            phase = mixed(govern_url, location, token, args.seconds, args.deciders, args.readers)
            acknowledged += phase["decisions"]["acknowledged"]
            result["mixed"] = phase
        finally:
            for proc in (govern, peer):
                proc.terminate()
                proc.wait(timeout=30)
        # Every acknowledged decision and read is in the log, once (invariant 2).
        reads = result["mixed"]["reads"]["acknowledged"]
        result["acknowledged"] = {"decisions": acknowledged, "reads": reads}
        result["logged"] = {k: logged(home, k) for k in ("decision", "read", "read.end")}
        # A Flight read is decided (one decision entry) before its rows are sent.
        result["log_complete"] = result["logged"] == {
            "decision": acknowledged + reads,
            "read": reads,
            "read.end": reads,
        }
    emit("load", result)


if __name__ == "__main__":
    main()
