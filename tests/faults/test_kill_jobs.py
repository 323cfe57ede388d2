"""SIGKILL of ``govern serve`` while an unlearning job it submitted runs: after a restart the
job is picked up where it was, runs once, and its request completes."""

from __future__ import annotations

from pathlib import Path

from govern.gateway import Gateway
from govern.gateway.commands import JOBS_ACTOR
from govern.jobs import JobSpec
from govern.settings import load_settings
from tests.conftest import TEST_ACTOR, wait_for
from tests.faults.conftest import prepare
from tests.unit.jobs.conftest import add_request, gated_job


def test_sigkill_while_a_job_runs_resumes_it_once_after_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fast = {"GOVERN_JOBS_POLL_SECONDS": "0.1", "GOVERN_JOBS_RETRY_SECONDS": "0.1"}
    server = prepare(home, GOVERN_JOBS_BACKEND="local", **fast)
    # A gateway that records jobs and runs none (as the CLI does), to enqueue and to watch.
    settings = load_settings(
        home=home, config=home / "none.toml", llm_backend="none", jobs_backend="local"
    )
    gateway = Gateway.open(settings)
    log, gate = tmp_path / "job.log", tmp_path / "go"
    code = gated_job(log, gate)
    try:
        gateway.commands.put_principal("trainer-1", ["trainer"], {}, TEST_ACTOR)
        rid = add_request(gateway, "subject-killed")
        spec = JobSpec(
            kind="unlearn", run_id="run-k", principal_id="trainer-1", argv=("python", "-c", code)
        )
        (job_id,) = gateway.commands.enqueue_jobs(rid, [spec], TEST_ACTOR)

        server.start()
        wait_for(lambda: log.exists() and log.read_text() == "start\n", 30)
        wait_for(lambda: gateway.queries.job(job_id).state in ("submitted", "running"), 30)
        external_id = gateway.queries.job(job_id).external_id
        server.kill()  # the job runs on, with no gateway watching

        gate.touch()
        wait_for(lambda: log.read_text() == "start\ndone\n", 30)
        server.start()
        wait_for(lambda: gateway.queries.job(job_id).state == "succeeded", 30)
        done = gateway.queries.job(job_id)
        assert done.attempts == 1 and done.external_id == external_id
        assert log.read_text() == "start\ndone\n"  # ran once, not again after the restart
        assert gateway.queries.erasure_request(rid).info.state == "completed"
        for kind in ("job.attempt", "job.submit", "job.end"):
            (entry,) = gateway.queries.ledger_entries(
                gateway.operator, limit=1000, kind=kind, object_ref=f"job:{job_id}"
            )
            assert entry.entry["actor"] == JOBS_ACTOR
        verified = server.cli("ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        server.halt()
        gateway.close()
