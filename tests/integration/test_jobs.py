"""Jobs end to end over both stores, with real processes: a retrain job reads the governed data
through Flight with the token minted for it, its state flows back to the erasure request and
the REST API, and a gateway restart in the middle of a job neither loses nor repeats it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import govern_connect
import pytest
from fastapi.testclient import TestClient

from govern.api import create_app
from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.gateway.commands import JOBS_ACTOR
from govern.jobs import JobSpec
from govern.settings import load_settings
from govern.store.migrate import upgrade
from govern.unlearning.recipes import RecipeBody, RecipeDatasetBody
from tests.conftest import TEST_ACTOR, auth, free_port, wait_for
from tests.unit.flight.serving import load_small_demo
from tests.unit.jobs.conftest import add_request, gated_job

Factory = Callable[..., Gateway]
FAST = {"jobs_poll_seconds": 0.1, "jobs_retry_seconds": 0.1}

# A retrain job's stand-in: reads its run's data through the connector, as a trainer would.
# A recipe trainer that reads patient_notes through Flight under the run id it is given and
# writes the row ids it received to --output (the options every recipe trainer takes).
READER = """
import argparse, json, os
import govern_connect
parser = argparse.ArgumentParser()
parser.add_argument("--run-id", required=True)
parser.add_argument("--output", required=True)
args, _ = parser.parse_known_args()
client = govern_connect.connect(os.environ["GOVERN_FLIGHT_URL"], os.environ["GOVERN_TOKEN"])
table = client.read("patient_notes", purpose="training", run_id=args.run_id)
json.dump({"ids": table.column("_row_id").to_pylist()}, open(args.output, "w"))
"""


def reader_settings(workdir: Path) -> dict[str, object]:
    """Settings under which run recipes may name READER (as reader.py in ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "reader.py").write_text(READER)
    return {"unlearning_workdir": workdir, "unlearning_trainers": ["reader.py"]}


def register_reader(gateway: Gateway, token: str, run_id: str, output: Path) -> None:
    """``run_id`` was trained by READER: an erasure of a subject it read retrains it so."""
    gateway.commands.put_recipe(
        gateway.decider.authenticate(token),
        run_id,
        RecipeBody(
            trainer="reader.py",
            datasets=[RecipeDatasetBody(name="patient_notes", version=1)],
            purpose="training",
            output=str(output),
        ),
    )


def retrain_job(gateway: Gateway, request_id: str) -> tuple[str, str, Path]:
    """(job id, the run id it trains under, the file it writes) of a request's one job."""
    (job,) = gateway.queries.jobs(request_id)
    argv = list(job.spec.argv)
    return job.id, argv[argv.index("--run-id") + 1], Path(argv[argv.index("--output") + 1])


@pytest.fixture
def make_gateway(tmp_path: Path, database_url: str) -> Iterator[Factory]:
    """make_gateway(watch=..., **settings): a gateway over this test's store and home; a
    second one over the same store and home is the same deployment restarted."""
    opened: list[Gateway] = []

    def make(watch: bool = True, **overrides: object) -> Gateway:
        settings = load_settings(
            home=tmp_path / "home",
            database_url=database_url,
            config=tmp_path / "none.toml",
            **{**FAST, **overrides},
        )
        upgrade(settings.resolved_database_url)
        gateway = Gateway.open(settings, watch=watch, anchor=False)
        opened.append(gateway)
        return gateway

    yield make
    for gateway in opened:
        gateway.close()


def owners(gateway: Gateway) -> dict[int, str]:
    info = gateway.queries.dataset("patient_notes")
    rows = duckdb.sql(f"SELECT _row_id, patient_id FROM read_parquet('{info.path}')").fetchall()
    return {int(r): str(p) for r, p in rows}


def test_a_retrain_job_reads_through_flight_and_completes_the_request(
    make_gateway: Factory, tmp_path: Path
) -> None:
    port = free_port()
    gateway = make_gateway(flight_port=port, **reader_settings(tmp_path / "work"))
    load_small_demo(gateway)
    owner = owners(gateway)
    server = FlightServer(gateway, "127.0.0.1", port)
    try:
        trainer = gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
        before = govern_connect.connect(server.location, trainer).read(
            "patient_notes", purpose="training", run_id="run-a"
        )
        register_reader(gateway, trainer, "run-a", tmp_path / "retrained.json")
        subject, _ = Counter(owner[i] for i in before.column("_row_id").to_pylist()).most_common(1)[
            0
        ]
        # The request plans the retrain its run's recipe stands for, and the job runs it.
        info = gateway.commands.request_erasure(subject, None, "gdpr-art17", TEST_ACTOR)
        job_id, retrained, out = retrain_job(gateway, info.id)
        wait_for(lambda: gateway.queries.erasure_request(info.id).info.state == "completed", 60)
        read = json.loads(out.read_text())["ids"]
        assert read and subject not in {owner[i] for i in read}
        expected = [i for i in before.column("_row_id").to_pylist() if owner[i] != subject]
        assert sorted(read) == sorted(expected)
        # The job's read was governed and recorded like any other.
        rerun, reads = gateway.queries.run(gateway.operator, retrained)
        assert rerun.principal_id == "demo-trainer"
        assert sum(r.row_count for r in reads) == len(read)

        officer = auth(
            gateway.commands.issue_token("demo-compliance", "compliance", TEST_ACTOR).token
        )
        with TestClient(create_app(gateway, close_on_shutdown=False)) as client:
            body = client.get(f"/v1/erasure-requests/{info.id}", headers=officer).json()
        assert body["state"] == "completed"
        # Completed: the subject id in clear is gone from the store, the commitment stays.
        assert body["subject_id"] is None
        assert body["subject_commitment"] == info.subject_commitment != ""
        (shown,) = body["jobs"]
        assert {k: shown[k] for k in ("id", "backend", "kind", "state", "run_id", "attempts")} == {
            "id": job_id,
            "backend": "local",
            "kind": "retrain",
            "state": "succeeded",
            "run_id": "run-a",
            "attempts": 1,
        }
        assert shown["message"] == "exit code 0"
    finally:
        assert server.stop(timeout=15)


def test_a_job_survives_a_gateway_restart_and_runs_exactly_once(
    make_gateway: Factory, tmp_path: Path
) -> None:
    first = make_gateway()
    first.commands.put_principal("trainer-1", ["trainer"], {}, TEST_ACTOR)
    rid = add_request(first, "subject-restart")
    log = tmp_path / "job.log"
    gate = tmp_path / "go"
    code = gated_job(log, gate)
    spec = JobSpec(
        kind="unlearn", run_id="run-r", principal_id="trainer-1", argv=("python", "-c", code)
    )
    (job_id,) = first.commands.enqueue_jobs(rid, [spec], TEST_ACTOR)
    wait_for(lambda: log.exists() and log.read_text() == "start\n", 30)
    wait_for(lambda: first.queries.job(job_id).state in ("submitted", "running"), 30)
    assert first.queries.erasure_request(rid).info.state == "running"
    external_id = first.queries.job(job_id).external_id
    first.close()  # the gateway goes away while its job runs

    gate.touch()  # the job may now finish, with no gateway watching
    wait_for(lambda: log.read_text() == "start\ndone\n", 30)
    second = make_gateway()
    wait_for(lambda: second.queries.job(job_id).state == "succeeded", 30)
    done = second.queries.job(job_id)
    assert done.attempts == 1 and done.external_id == external_id
    assert log.read_text() == "start\ndone\n"
    assert second.queries.erasure_request(rid).info.state == "completed"

    def logged(kind: str) -> list[dict[str, Any]]:
        views = second.queries.ledger_entries(
            second.operator, limit=10_000, kind=kind, object_ref=f"job:{job_id}"
        )
        return [v.entry for v in views]

    # One attempt, one submit, one end across both processes, each by the reconciler.
    (attempt,) = logged("job.attempt")
    (submit,) = logged("job.submit")
    (end,) = logged("job.end")
    assert {e["actor"] for e in (attempt, submit, end)} == {JOBS_ACTOR}
    assert submit["data"]["external_id"] == external_id
    assert end["data"]["state"] == "succeeded" and "message" not in end["data"]
    (complete,) = second.queries.ledger_entries(
        second.operator, kind="erasure.complete", object_ref=f"erasure:{rid}"
    )
    assert complete.entry["data"]["jobs"] == 1
    assert second.queries.erasure_request(rid).info.subject_id is None


def test_jobs_left_pending_by_a_stopped_gateway_are_submitted_by_the_next(
    make_gateway: Factory, tmp_path: Path
) -> None:
    idle = make_gateway(watch=False)  # e.g. the CLI: records jobs, runs no reconciler
    idle.commands.put_principal("trainer-1", ["trainer"], {}, TEST_ACTOR)
    rid = add_request(idle, "subject-pending")
    marker = tmp_path / "ran"
    spec = JobSpec(
        kind="retrain",
        run_id="run-p",
        principal_id="trainer-1",
        argv=("python", "-c", f"open({str(marker)!r}, 'a').write('x')"),
    )
    (job_id,) = idle.commands.enqueue_jobs(rid, [spec], TEST_ACTOR)
    assert idle.queries.erasure_request(rid).info.state == "excluded"
    idle.close()
    serving = make_gateway()
    wait_for(lambda: serving.queries.erasure_request(rid).info.state == "completed", 30)
    assert serving.queries.job(job_id).state == "succeeded" and marker.read_text() == "x"
