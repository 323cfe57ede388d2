"""`govern jobs` and `govern erasure status`, run as the real executable against a home whose
store holds a failed job."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govern.events.commitment import Commitments
from govern.gateway import Gateway
from govern.settings import Settings, load_settings
from govern.unlearning.erasure import request_id
from tests.conftest import TEST_ACTOR, wait_for
from tests.unit.jobs.conftest import add_request, python_spec

GOVERN = str(Path(sys.executable).with_name("govern"))


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GOVERN_HOME": str(home),
        "GOVERN_CONFIG": str(home / "none.toml"),
        "COLUMNS": "300",  # rich tables: no truncated ids
    }
    env.pop("GOVERN_DATABASE_URL", None)
    env.pop("GOVERN_CLI_ACTOR", None)  # the default: cli:<login name>
    return subprocess.run(
        [GOVERN, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A home with one erasure request and its one job, which failed (its only attempt exited
    5): (home, request id, job id)."""
    h = tmp_path_factory.mktemp("jobs-cli")
    assert run(h, "db", "upgrade").returncode == 0
    gateway = Gateway.open(settings_of(h, jobs_max_attempts=1), anchor=False)
    try:
        gateway.commands.put_principal("trainer-1", ["trainer"], {}, TEST_ACTOR)
        rid = add_request(gateway, "subject-cli")
        code = "print('shard 3 is missing'); raise SystemExit(5)"
        (job_id,) = gateway.commands.enqueue_jobs(
            rid, [python_spec(code, run_id="run-cli")], TEST_ACTOR
        )

        def failed() -> bool:
            gateway.run_jobs_once()
            return gateway.queries.job(job_id).state == "failed"

        wait_for(failed, 30)
    finally:
        gateway.close()
    return h, rid, job_id


def settings_of(home: Path, **overrides: object) -> Settings:
    """The settings the CLI reads for this home (the same keys, so the same commitments)."""
    return load_settings(home=home, config=home / "none.toml", **overrides)


def test_jobs_list_shows_jobs_and_filters_by_request(home: tuple[Path, str, str]) -> None:
    h, rid, job_id = home
    someone_else = Commitments(settings_of(h).commitment_key_bytes).subject("someone-else")
    listed = run(h, "jobs", "list")
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout and "failed" in listed.stdout and "run-cli" in listed.stdout
    assert job_id in run(h, "jobs", "list", "--request", rid).stdout
    assert job_id not in run(h, "jobs", "list", "--request", request_id(someone_else, None)).stdout


def test_jobs_show_includes_the_end_of_the_output(home: tuple[Path, str, str]) -> None:
    h, _rid, job_id = home
    shown = run(h, "jobs", "show", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "state: failed" in shown.stdout and "attempts: 1" in shown.stdout
    assert "shard 3 is missing" in shown.stdout
    missing = run(h, "jobs", "show", "job-nope")
    assert missing.returncode == 2 and "no job" in missing.stderr


def test_erasure_status_shows_the_jobs_and_the_rewrite(home: tuple[Path, str, str]) -> None:
    h, rid, job_id = home
    status = run(h, "erasure", "status", rid)
    assert status.returncode == 0, status.stderr
    assert f"{rid}: failed" in status.stdout and job_id in status.stdout
    assert "rewrite of the data files: done" in status.stdout  # no rows on disk to rewrite


def test_jobs_retry_then_refuses_a_job_that_has_not_failed(home: tuple[Path, str, str]) -> None:
    h, _rid, job_id = home
    retried = run(h, "jobs", "retry", job_id)
    assert retried.returncode == 0, retried.stderr
    assert f"{job_id}: pending" in retried.stdout
    again = run(h, "jobs", "retry", job_id)
    assert again.returncode == 2 and "only failed or cancelled jobs are retried" in again.stderr
    cancelled = run(h, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0 and f"{job_id}: cancelled" in cancelled.stdout
    # Both changes are in the access log under the CLI's actor (the refused retry is not).
    gateway = Gateway.open(settings_of(h), anchor=False)
    try:
        logged = gateway.queries.ledger_entries(
            gateway.operator, limit=1000, object_ref=f"job:{job_id}"
        )
    finally:
        gateway.close()
    cli = "cli:" + getpass.getuser()
    assert [(v.entry["kind"], v.entry["actor"]) for v in logged][-3:] == [
        ("job.retry", cli),
        ("job.end", cli),
        ("job.cancel", cli),
    ]
    assert logged[-3].entry["data"] == {"id": job_id, "was": "failed"}
    assert logged[-1].entry["data"] == {"id": job_id, "was": "pending"}
