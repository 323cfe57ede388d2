"""The metadata store (PostgreSQL) stopped and started again under decision traffic: every
decision meanwhile is a 503, none an allow; nothing half-written; the same gateway process
serves again once the store is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.faults.conftest import ALLOWED, GovernServer, PrivatePostgres, prepare

CLIENTS = 4


def test_decisions_answer_503_while_postgres_is_down_and_recover_without_a_restart(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    server = prepare(tmp_path / "home", private_postgres.url("govern"))
    try:
        server.start()
        pid = server.proc.pid if server.proc else None
        outcome = asyncio.run(_traffic_across_an_outage(server, private_postgres))
        assert server.proc is not None and server.proc.pid == pid and server.proc.poll() is None
    finally:
        server.halt()
    before, during, after = outcome["before"], outcome["during"], outcome["after"]
    assert before["allow"] > 0 and after["allow"] > 0
    # While the store is down: no allow, every answer a 503 naming the store.
    assert during["allow"] == 0 and during["answers"] > 0
    assert set(during["codes"]) <= {"store_unavailable", "unavailable"}, during["codes"]
    assert during["statuses"] == {503}
    assert outcome["readyz_down"] == 503
    assert outcome["change_down"] == 503 and outcome["rules_after"] > 0

    entries = server.entries()
    acked = outcome["acked"]
    assert [i for i in acked if i not in entries] == []
    verified = server.cli("ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(
        f"{before['allow']} allows before, {during['answers']} answers during the outage "
        f"(all 503), {after['allow']} allows after; recovered in {outcome['recovery_s']:.2f} s"
    )


async def _traffic_across_an_outage(server: GovernServer, pg: PrivatePostgres) -> dict[str, Any]:
    phase = "before"
    tally: dict[str, dict[str, Any]] = {
        p: {"allow": 0, "answers": 0, "statuses": set(), "codes": set()}
        for p in ("before", "during", "after")
    }
    acked: list[int] = []
    stop = asyncio.Event()

    async def client(c: httpx.AsyncClient) -> None:
        while not stop.is_set():
            asked_in = phase
            try:
                r = await c.post("/v1/decisions", json=ALLOWED)
            except httpx.HTTPError as exc:
                raise AssertionError(f"the gateway did not answer: {exc!r}") from exc
            # A request sent before the stop may be answered either way; judged by when sent.
            t = tally[asked_in]
            t["answers"] += 1
            t["statuses"].add(r.status_code)
            body = r.json()
            if r.status_code == 200 and body["decision"] == "allow":
                assert isinstance(body["log_index"], int), body
                t["allow"] += 1
                acked.append(body["log_index"])
            else:
                t["codes"].add(body.get("error"))
            await asyncio.sleep(0.005)

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers(server.trainer), limits=limits, timeout=30
    ) as c:
        tasks = [asyncio.create_task(client(c)) for _ in range(CLIENTS)]
        await _until(lambda: tally["before"]["allow"] >= 50, "allows before the stop")
        phase = "stopping"
        tally["stopping"] = {"allow": 0, "answers": 0, "statuses": set(), "codes": set()}
        await asyncio.to_thread(pg.stop)
        phase = "during"
        await asyncio.sleep(1.5)
        readyz_down = (await c.get("/readyz")).status_code
        # A change asked for meanwhile is refused, not half made.
        change_down = await c.put(
            "/v1/policies", json={"rules": []}, headers=server.headers(server.steward)
        )
        phase = "starting"
        tally["starting"] = tally["stopping"]
        await asyncio.to_thread(pg.start)
        started = time.monotonic()
        phase = "after"
        await _until(lambda: tally["after"]["allow"] > 0, "an allow after the store is back")
        recovery = time.monotonic() - started
        await _until(lambda: tally["after"]["allow"] >= 50, "allows after the store is back")
        stop.set()
        await asyncio.gather(*tasks)
        policies = (await c.get("/v1/policies", headers=server.headers(server.steward))).json()
    return {
        **tally,
        "acked": acked,
        "readyz_down": readyz_down,
        "change_down": change_down.status_code,
        "rules_after": len(policies["rules"]),
        "recovery_s": recovery,
    }


async def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        await asyncio.sleep(0.01)
