"""The job manager over a real store, with real local processes and a real unreachable Ray
address: idempotent enqueue, tokens minted per submit and never stored, retries with backoff
and a reason, giving up, admin retry, and the request state rolled up from the jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pyarrow as pa
import pytest

from govern.errors import AuthError, BadRequest, Conflict, JobNotFound, NotFound
from govern.gateway import Gateway
from govern.jobs import JobInfo, JobSpec, job_id_for
from govern.store.models import Job
from tests.conftest import TEST_ACTOR, free_port, raw_store, wait_for
from tests.unit.jobs.conftest import GatewayFactory, add_request, python_spec

FAST = {"jobs_retry_seconds": 0.05, "jobs_poll_seconds": 0.05}


def settle(gateway: Gateway, job_id: str, timeout: float = 20) -> JobInfo:
    """Tick until the job has ended."""

    def done() -> bool:
        gateway.run_jobs_once()
        return gateway.queries.job(job_id).terminal

    wait_for(done, timeout)
    return gateway.queries.job(job_id)


def entries(gateway: Gateway, kind: str | None = None) -> list[dict[str, Any]]:
    """The access log's entries (of one kind), oldest first."""
    views = gateway.queries.ledger_entries(gateway.operator, limit=1000, kind=kind)
    return [v.entry for v in views]


def trainer(gateway: Gateway, roles: tuple[str, ...] = ("trainer",)) -> None:
    """The principal the test jobs run as (``python_spec``'s)."""
    gateway.commands.put_principal("trainer-1", list(roles), {}, TEST_ACTOR)


def enqueue_one(gateway: Gateway, rid: str, spec: JobSpec) -> str:
    (job_id,) = gateway.commands.enqueue_jobs(rid, [spec], TEST_ACTOR)
    return job_id


def test_enqueue_is_idempotent_and_marks_the_request_planned(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(jobs_backend="none")
    rid = add_request(gateway)
    specs = [python_spec("pass", "run-a"), python_spec("pass", "run-b", kind="unlearn")]
    first = gateway.commands.enqueue_jobs(rid, [*specs, specs[0]], TEST_ACTOR)
    size = gateway.queries.log_size()
    # The same jobs again: nothing is added, and nothing is logged.
    assert gateway.commands.enqueue_jobs(rid, specs, TEST_ACTOR) == []
    assert gateway.queries.log_size() == size
    jobs = gateway.queries.jobs(rid)
    assert sorted(j.id for j in jobs) == sorted(first)
    assert set(first) == {job_id_for(rid, s) for s in specs}
    assert {(j.run_id, j.kind, j.state, j.attempts) for j in jobs} == {
        ("run-a", "retrain", "pending", 0),
        ("run-b", "unlearn", "pending", 0),
    }
    assert len(gateway.queries.jobs()) == 2
    info = gateway.queries.erasure_request(rid).info
    assert info.state == "excluded"
    assert "GOVERN_JOBS_BACKEND=none" in info.message
    [enqueued] = entries(gateway, "job.enqueue")
    assert (enqueued["actor"], enqueued["object"]) == (TEST_ACTOR, f"erasure:{rid}")
    assert enqueued["data"] == {"request": rid, "jobs": first, "backend": "none"}


def test_a_request_whose_rows_no_run_read_completes_once_planned(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    people = pa.table({"person": ["subject-1", "subject-1", "subject-2"], "x": [1, 2, 3]})
    gateway.commands.register_dataset("people", people, "person", TEST_ACTOR)
    # The request plans its jobs as it is made; no run read the rows, so none is needed and
    # the request completes at once.
    info = gateway.commands.request_erasure("subject-1", None, "gdpr-art17", TEST_ACTOR)
    assert info.excluded_rows == 2
    assert info.state == "completed" and "no retrain or unlearn job was planned" in info.message
    assert gateway.queries.jobs(info.id) == []
    # Completed is final: a job added now would run after the log said the request was done.
    size = gateway.queries.log_size()
    with pytest.raises(Conflict, match="has completed"):
        gateway.commands.enqueue_jobs(info.id, [python_spec("pass")], TEST_ACTOR)
    assert gateway.queries.jobs(info.id) == [] and gateway.queries.log_size() == size
    info = gateway.queries.erasure_request(info.id).info
    assert info.state == "completed" and "no retrain or unlearn job was planned" in info.message
    # Completed: the subject id in clear is gone, the commitment stays.
    assert info.subject_id is None and info.subject_commitment
    [done] = entries(gateway, "erasure.complete")
    assert done["object"] == f"erasure:{info.id}"
    assert done["data"] == {"id": info.id, "subject_commitment": info.subject_commitment, "jobs": 0}


def test_bad_job_specs_and_unknown_requests_are_refused(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    rid = add_request(gateway)
    size = gateway.queries.log_size()
    with pytest.raises(NotFound):
        gateway.commands.enqueue_jobs("er-unknown", [python_spec("pass")], TEST_ACTOR)
    for bad in (
        JobSpec(kind="retrain", run_id="r", principal_id="p", argv=()),
        JobSpec(kind="retrain", run_id="", principal_id="p", argv=("x",)),
        JobSpec(kind="forget", run_id="r", principal_id="p", argv=("x",)),  # type: ignore[arg-type]
        python_spec("pass", env={"GOVERN_TOKEN": "smuggled"}),
        python_spec("pass", gpus=-1),
    ):
        with pytest.raises(BadRequest):
            gateway.commands.enqueue_jobs(rid, [bad], TEST_ACTOR)
    with pytest.raises(JobNotFound):
        gateway.queries.job("job-nope")
    # Refused changes leave no job and no entry behind.
    assert gateway.queries.jobs() == []
    assert gateway.queries.log_size() == size


def test_a_local_job_reads_with_a_fresh_token_that_is_never_stored_and_revoked_at_its_end(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = make_gateway(jobs_flight_url="grpc://127.0.0.1:9999", **FAST)
    trainer(gateway)
    rid = add_request(gateway)
    out = tmp_path / "seen.json"
    code = (
        "import json, os; json.dump({k: os.environ.get(k) for k in "
        "('GOVERN_TOKEN', 'GOVERN_FLIGHT_URL', 'GOVERN_JOB_ID', 'SEED')}, "
        f"open({str(out)!r}, 'w'))"
    )
    job_id = enqueue_one(gateway, rid, python_spec(code, env={"SEED": "11"}))
    done = settle(gateway, job_id)
    assert (done.state, done.attempts, done.backend) == ("succeeded", 1, "local")
    assert done.started_at is not None and done.finished_at is not None
    seen = json.loads(out.read_text())
    assert seen["GOVERN_FLIGHT_URL"] == "grpc://127.0.0.1:9999"
    assert (seen["GOVERN_JOB_ID"], seen["SEED"]) == (job_id, "11")
    claims = jwt.decode(
        seen["GOVERN_TOKEN"], gateway.settings.token_secret, algorithms=["HS256"], issuer="govern"
    )
    assert (claims["sub"], claims["role"]) == ("trainer-1", "trainer")
    assert claims["exp"] - claims["iat"] == gateway.settings.jobs_token_ttl_seconds
    db = raw_store(gateway)
    try:
        with db.session() as s:
            row = s.get(Job, job_id)
            assert row is not None
            stored = json.dumps(
                [row.spec, row.message, row.external_id, row.token_jti], default=str
            )
    finally:
        db.dispose()
    assert seen["GOVERN_TOKEN"] not in stored
    # The job has ended, so its token no longer opens anything.
    with pytest.raises(AuthError):
        gateway.decider.authenticate(seen["GOVERN_TOKEN"])
    info = gateway.queries.erasure_request(rid).info
    assert info.state == "completed" and info.subject_id is None
    log = entries(gateway)
    assert {"job.enqueue", "job.submit", "job.end", "erasure.complete"} <= {e["kind"] for e in log}
    # The token's issue and revocation are logged by id; the token itself never is.
    issued = [e for e in log if e["kind"] == "token.issue"]
    assert [e["data"]["jti"] for e in issued] == [claims["jti"]]
    assert claims["jti"] in [e["data"]["jti"] for e in log if e["kind"] == "token.revoke"]
    assert seen["GOVERN_TOKEN"] not in json.dumps(log)
    [end] = [e for e in log if e["kind"] == "job.end"]
    assert end["object"] == f"job:{job_id}" and end["actor"] == "govern-jobs"
    assert end["data"] == {"id": job_id, "state": "succeeded", "run_id": "run-1", "attempts": 1}


def test_an_unreachable_backend_makes_jobs_retry_with_a_reason_then_give_up(
    make_gateway: GatewayFactory,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(jobs_backend="ray", jobs_ray_address=down, jobs_max_attempts=3, **FAST)
    trainer(gateway)
    rid = add_request(gateway)
    job_id = enqueue_one(gateway, rid, python_spec("pass"))
    gateway.run_jobs_once()
    waiting = gateway.queries.job(job_id)
    assert (waiting.state, waiting.attempts) == ("retrying", 1)
    assert "attempt 1 of 3 failed" in waiting.message and down in waiting.message
    assert "unreachable" in waiting.message
    request = gateway.queries.erasure_request(rid).info
    assert request.state == "excluded" and "unreachable" in request.message
    # The same attempt id is kept: a submit that did land is then found, not repeated.
    assert waiting.external_id is not None
    # The log says the job is retrying, without the backend's message.
    states = entries(gateway, "job.state")
    assert states[0]["data"] == {
        "id": job_id,
        "state": "retrying",
        "previous": "pending",
        "attempts": 1,
    }
    failed = settle(gateway, job_id)
    assert (failed.state, failed.attempts) == ("failed", 3)
    assert failed.message.startswith("gave up after 3 attempt(s)")
    request = gateway.queries.erasure_request(rid).info
    assert request.state == "failed" and job_id in request.message
    assert request.subject_id == "subject-1"  # not completed: the cleartext is kept
    [end] = entries(gateway, "job.end")
    assert end["data"] == {"id": job_id, "state": "failed", "run_id": "run-1", "attempts": 3}
    assert "unreachable" not in json.dumps(entries(gateway))
    retried = gateway.commands.retry_job(job_id, "an-admin")
    assert (retried.state, retried.attempts, retried.external_id) == ("pending", 0, None)
    assert "retry requested by an-admin" in retried.message
    [retry] = entries(gateway, "job.retry")
    assert (retry["actor"], retry["data"]) == ("an-admin", {"id": job_id, "was": "failed"})
    with pytest.raises(Conflict):
        gateway.commands.retry_job(job_id, "an-admin")
    assert len(entries(gateway, "job.retry")) == 1


def test_backoff_waits_before_the_next_attempt(make_gateway: GatewayFactory) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(jobs_backend="ray", jobs_ray_address=down, jobs_retry_seconds=30)
    trainer(gateway)
    job_id = enqueue_one(gateway, add_request(gateway), python_spec("pass"))
    gateway.run_jobs_once()
    gateway.run_jobs_once()  # not due yet: no second attempt
    waiting = gateway.queries.job(job_id)
    assert waiting.attempts == 1 and waiting.next_attempt_at is not None
    assert 25 < (waiting.next_attempt_at - waiting.updated_at).total_seconds() <= 31
    assert len(entries(gateway, "job.attempt")) == 1


def test_a_failing_job_is_retried_and_then_fails_with_its_output(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = make_gateway(jobs_max_attempts=2, **FAST)
    trainer(gateway)
    rid = add_request(gateway)
    count = tmp_path / "tries"
    code = f"open({str(count)!r}, 'a').write('.'); print('no such shard'); raise SystemExit(2)"
    job_id = enqueue_one(gateway, rid, python_spec(code))
    failed = settle(gateway, job_id)
    assert (failed.state, failed.attempts) == ("failed", 2)
    assert "exit code 2" in failed.message and "no such shard" in failed.message
    assert count.read_text() == ".."
    assert gateway.queries.erasure_request(rid).info.state == "failed"
    # The job's output stays out of the log.
    assert "no such shard" not in json.dumps(entries(gateway))


def test_a_job_whose_principal_is_gone_fails_at_once(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**FAST)
    job_id = enqueue_one(gateway, add_request(gateway), python_spec("pass"))
    gateway.run_jobs_once()
    failed = gateway.queries.job(job_id)
    assert failed.state == "failed" and "cannot mint a token" in failed.message
    assert entries(gateway, "token.issue") == []


def test_cancel_stops_a_running_job(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**FAST)
    trainer(gateway)
    job_id = enqueue_one(gateway, add_request(gateway), python_spec("import time; time.sleep(60)"))
    gateway.run_jobs_once()
    assert gateway.queries.job(job_id).state == "submitted"
    started = time.monotonic()
    cancelled = gateway.commands.cancel_job(job_id, "an-admin")
    assert cancelled.state == "cancelled" and cancelled.terminal
    gateway.run_jobs_once()
    assert gateway.queries.job(job_id).state == "cancelled"
    assert time.monotonic() - started < 10
    [cancel] = entries(gateway, "job.cancel")
    assert (cancel["actor"], cancel["data"]) == ("an-admin", {"id": job_id, "was": "submitted"})
    with pytest.raises(Conflict):
        gateway.commands.cancel_job(job_id, "an-admin")


def test_local_jobs_wait_for_a_free_slot(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway(jobs_max_running=1, **FAST)
    trainer(gateway)
    rid = add_request(gateway)
    gate = tmp_path / "go"
    code = f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"
    first, second = gateway.commands.enqueue_jobs(
        rid, [python_spec(code, "run-1"), python_spec(code, "run-2")], TEST_ACTOR
    )
    gateway.run_jobs_once()
    # Jobs made at the same moment start in id order, and ids hash the request's (keyed) id,
    # so which of the two goes first is not fixed: one runs, the other waits for the slot.
    states = sorted(gateway.queries.jobs(rid), key=lambda j: j.state)
    assert [j.state for j in states] == ["pending", "submitted"]
    assert "waiting for a free slot: 1 local job(s) running" in states[0].message
    assert gateway.queries.erasure_request(rid).info.state == "running"
    gate.touch()
    assert settle(gateway, first).state == "succeeded"
    assert settle(gateway, second).state == "succeeded"
    assert gateway.queries.erasure_request(rid).info.state == "completed"
    assert oct((tmp_path / "home" / "jobs").stat().st_mode & 0o777) == "0o700"
    [done] = entries(gateway, "erasure.complete")
    assert done["data"]["jobs"] == 2


def test_a_job_only_ever_reads_as_a_trainer(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**FAST)
    trainer(gateway, roles=("admin",))  # the run's principal, no trainer role
    job_id = enqueue_one(gateway, add_request(gateway), python_spec("pass"))
    gateway.run_jobs_once()
    failed = gateway.queries.job(job_id)
    assert failed.state == "failed" and "does not hold the trainer role" in failed.message
    assert entries(gateway, "token.issue") == []
