"""Gateways with job settings of a test's choosing, over a migrated SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from govern.events.commitment import Commitments
from govern.gateway import Gateway
from govern.jobs import JobSpec
from govern.settings import load_settings
from govern.store.migrate import upgrade
from govern.store.models import ErasureRequest, utcnow
from govern.unlearning.erasure import request_id
from tests.conftest import TEST_ACTOR, raw_store

GatewayFactory = Callable[..., Gateway]


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """make_gateway(watch=False, **settings) opens a gateway on this test's home; every one
    opened is closed at the end. Opening a second one over the same home is a restart."""
    opened: list[Gateway] = []

    def make(watch: bool = False, **overrides: object) -> Gateway:
        settings = load_settings(home=tmp_path / "home", config=tmp_path / "none.toml", **overrides)
        upgrade(settings.resolved_database_url)
        gateway = Gateway.open(settings, watch=watch, anchor=False)
        opened.append(gateway)
        return gateway

    yield make
    for gateway in opened:
        gateway.close()


def gated_job(log: Path, gate: Path) -> str:
    """Python for a job that writes 'start' to ``log``, waits until ``gate`` exists, then
    writes 'done': a job a test can hold running and then let finish."""
    return (
        "import pathlib, time\n"
        f"log = pathlib.Path({str(log)!r})\n"
        "with log.open('a') as f: f.write('start\\n')\n"
        f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)\n"
        "with log.open('a') as f: f.write('done\\n')\n"
    )


def add_request(gateway: Gateway, subject: str = "subject-1", rows: int = 3) -> str:
    """An erasure request row for ``subject``, as ``ErasureService.request`` stores one with
    rows excluded, before its jobs are planned; returns its id. Planted on the raw store: these
    tests have no data files for ``commands.request_erasure`` to find rows in, and a real
    request plans (and, with no runs, completes) in the same transaction."""
    commitment = Commitments(gateway.settings.commitment_key_bytes).subject(subject)
    rid = request_id(commitment, None)
    db = raw_store(gateway)
    try:
        with db.session() as s:
            s.add(
                ErasureRequest(
                    id=rid,
                    subject_id=subject if rows else None,
                    subject_commitment=commitment,
                    datasets=None,
                    legal_basis="gdpr-art17",
                    state="excluded" if rows else "completed",
                    excluded_rows=rows,
                    requested_by=TEST_ACTOR,
                    # A request with nothing excluded completes as it is made.
                    completed_at=None if rows else utcnow(),
                )
            )
    finally:
        db.dispose()
    return rid


def python_spec(code: str, run_id: str = "run-1", kind: str = "retrain", **kw: object) -> JobSpec:
    return JobSpec(
        kind=kind,  # type: ignore[arg-type]
        run_id=run_id,
        principal_id="trainer-1",
        argv=("python", "-c", code),
        **kw,  # type: ignore[arg-type]
    )
