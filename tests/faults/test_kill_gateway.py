"""SIGKILL of ``govern serve`` mid-traffic: every answer it acknowledged survives in the log,
the log verifies, and the gateway serves again from the same state."""

from __future__ import annotations

import asyncio

import httpx

from tests.faults.conftest import ALLOWED, GovernServer

CLIENTS = 8


async def _decide_until_killed(server: GovernServer, kill_after: int) -> tuple[list[int], int]:
    """CLIENTS connections post decisions back to back; after ``kill_after`` acknowledgements
    the server is SIGKILLed while they are still sending. Returns the log indexes of every
    acknowledged decision and the number of answers that were not a 200 allow."""
    acked: list[int] = []
    refused = 0
    killed = asyncio.Event()

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal refused
        while True:
            try:
                r = await c.post("/v1/decisions", json=ALLOWED)
            except httpx.HTTPError:
                return  # the gateway is gone
            if r.status_code == 200 and r.json()["decision"] == "allow":
                index = r.json()["log_index"]
                assert isinstance(index, int), f"an allow without a log entry: {r.json()}"
                acked.append(index)
                if len(acked) == kill_after and not killed.is_set():
                    killed.set()
                    await asyncio.to_thread(server.kill)
            else:
                refused += 1

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers(server.trainer), limits=limits, timeout=10
    ) as c:
        await asyncio.gather(*(client(c) for _ in range(CLIENTS)))
    assert killed.is_set(), "the clients stopped before the kill"
    return acked, refused


def test_sigkill_under_eight_decision_clients_loses_no_acknowledged_entry(
    govern_server: GovernServer,
) -> None:
    govern_server.start()
    acked, refused = asyncio.run(_decide_until_killed(govern_server, kill_after=300))

    assert refused == 0
    assert len(acked) >= 300 and len(set(acked)) == len(acked)
    entries = govern_server.entries()
    lost = [i for i in acked if i not in entries]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged decisions are not in the log"
    assert {(entries[i].kind, entries[i].actor) for i in acked} == {("decision", "demo-trainer")}

    # The log verifies as the crash left it, and after a restart the gateway appends after it.
    verified = govern_server.cli("ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    govern_server.start()
    r = httpx.post(
        f"{govern_server.url}/v1/decisions",
        json=ALLOWED,
        headers=govern_server.headers(govern_server.trainer),
    )
    assert r.status_code == 200 and r.json()["log_index"] > max(acked)
    sample = sorted(acked)[:: max(1, len(acked) // 20)]
    for index in sample:
        got = httpx.get(
            f"{govern_server.url}/v1/ledger/entries/{index}",
            headers=govern_server.headers(govern_server.trainer),
        )
        assert got.status_code == 200, got.text
        assert got.json()["entry"]["kind"] == "decision"
    verified = govern_server.cli("ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(f"acknowledged {len(acked)} decisions before SIGKILL; all {len(acked)} in the log")
