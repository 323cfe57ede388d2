"""The job manager over a real store, with real local processes and a real unreachable Ray
address: idempotent enqueue, tokens minted per submit and never stored, retries with backoff
and a reason, giving up, admin retry, and the request state rolled up from the jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from sqlalchemy import select

from govern.errors import AuthError, BadRequest, Conflict, JobNotFound, NotFound
from govern.gateway import Gateway
from govern.jobs import JobInfo, JobSpec, job_id_for
from govern.store.models import Job
from tests.conftest import free_port, wait_for
from tests.unit.jobs.conftest import GatewayFactory, add_request, python_spec

FAST = {"jobs_retry_seconds": 0.05, "jobs_poll_seconds": 0.05}


def settle(gateway: Gateway, job_id: str, timeout: float = 20) -> JobInfo:
    """Tick until the job has ended."""

    def done() -> bool:
        gateway.jobs.tick()
        return gateway.jobs.get(job_id).terminal

    wait_for(done, timeout)
    return gateway.jobs.get(job_id)


def test_enqueue_is_idempotent_and_marks_the_request_planned(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(jobs_backend="none")
    rid = add_request(gateway)
    specs = [python_spec("pass", "run-a"), python_spec("pass", "run-b", kind="unlearn")]
    first = gateway.jobs.enqueue(rid, [*specs, specs[0]])
    again = gateway.jobs.enqueue(rid, specs)
    assert [j.id for j in first] == [j.id for j in again]
    assert {j.id for j in first} == {job_id_for(rid, s) for s in specs}
    assert {(j.run_id, j.kind, j.state, j.attempts) for j in first} == {
        ("run-a", "retrain", "pending", 0),
        ("run-b", "unlearn", "pending", 0),
    }
    with gateway.db.session() as s:
        assert len(s.scalars(select(Job)).all()) == 2
    info = gateway.erasure.get(rid)
    assert info.state == "excluded"
    assert "GOVERN_JOBS_BACKEND=none" in info.message


def test_a_request_whose_rows_no_run_read_completes_once_planned(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    rid = add_request(gateway)
    assert gateway.erasure.get(rid).state == "excluded"
    assert gateway.jobs.enqueue(rid, []) == []
    info = gateway.erasure.get(rid)
    assert info.state == "completed" and "no retrain or unlearn job was planned" in info.message


def test_bad_job_specs_and_unknown_requests_are_refused(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    rid = add_request(gateway)
    with pytest.raises(NotFound):
        gateway.jobs.enqueue("er-unknown", [python_spec("pass")])
    for bad in (
        JobSpec(kind="retrain", run_id="r", principal_id="p", argv=()),
        JobSpec(kind="retrain", run_id="", principal_id="p", argv=("x",)),
        JobSpec(kind="forget", run_id="r", principal_id="p", argv=("x",)),  # type: ignore[arg-type]
        python_spec("pass", env={"GOVERN_TOKEN": "smuggled"}),
        python_spec("pass", gpus=-1),
    ):
        with pytest.raises(BadRequest):
            gateway.jobs.enqueue(rid, [bad])
    with pytest.raises(JobNotFound):
        gateway.jobs.get("job-nope")


def test_a_local_job_reads_with_a_fresh_token_that_is_never_stored_and_revoked_at_its_end(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = make_gateway(jobs_flight_url="grpc://127.0.0.1:9999", **FAST)
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    rid = add_request(gateway)
    out = tmp_path / "seen.json"
    code = (
        "import json, os; json.dump({k: os.environ.get(k) for k in "
        "('GOVERN_TOKEN', 'GOVERN_FLIGHT_URL', 'GOVERN_JOB_ID', 'SEED')}, "
        f"open({str(out)!r}, 'w'))"
    )
    (job,) = gateway.jobs.enqueue(rid, [python_spec(code, env={"SEED": "11"})])
    done = settle(gateway, job.id)
    assert (done.state, done.attempts, done.backend) == ("succeeded", 1, "local")
    assert done.started_at is not None and done.finished_at is not None
    seen = json.loads(out.read_text())
    assert seen["GOVERN_FLIGHT_URL"] == "grpc://127.0.0.1:9999"
    assert (seen["GOVERN_JOB_ID"], seen["SEED"]) == (job.id, "11")
    claims = jwt.decode(
        seen["GOVERN_TOKEN"], gateway.settings.token_secret, algorithms=["HS256"], issuer="govern"
    )
    assert (claims["sub"], claims["role"]) == ("trainer-1", "trainer")
    assert claims["exp"] - claims["iat"] == gateway.settings.jobs_token_ttl_seconds
    with gateway.db.session() as s:
        row = s.get(Job, job.id)
        assert row is not None
        stored = json.dumps([row.spec, row.message, row.external_id])
    assert seen["GOVERN_TOKEN"] not in stored
    # The job has ended, so its token no longer opens anything.
    with pytest.raises(AuthError):
        gateway.tokens.verify(seen["GOVERN_TOKEN"])
    assert gateway.erasure.get(rid).state == "completed"
    kinds = [json.loads(leaf)["kind"] for _, leaf in gateway.ledger.leaves(0, 100)]
    assert {"job.enqueue", "job.submit", "job.end"} <= set(kinds)


def test_an_unreachable_backend_makes_jobs_retry_with_a_reason_then_give_up(
    make_gateway: GatewayFactory,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(jobs_backend="ray", jobs_ray_address=down, jobs_max_attempts=3, **FAST)
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    rid = add_request(gateway)
    (job,) = gateway.jobs.enqueue(rid, [python_spec("pass")])
    gateway.jobs.tick()
    waiting = gateway.jobs.get(job.id)
    assert (waiting.state, waiting.attempts) == ("retrying", 1)
    assert "attempt 1 of 3 failed" in waiting.message and down in waiting.message
    assert "unreachable" in waiting.message
    request = gateway.erasure.get(rid)
    assert request.state == "excluded" and "unreachable" in request.message
    # The same attempt id is kept: a submit that did land is then found, not repeated.
    assert waiting.external_id is not None
    failed = settle(gateway, job.id)
    assert (failed.state, failed.attempts) == ("failed", 3)
    assert failed.message.startswith("gave up after 3 attempt(s)")
    request = gateway.erasure.get(rid)
    assert request.state == "failed" and job.id in request.message
    retried = gateway.jobs.retry(job.id, "an-admin")
    assert (retried.state, retried.attempts, retried.external_id) == ("pending", 0, None)
    assert "retry requested by an-admin" in retried.message
    with pytest.raises(Conflict):
        gateway.jobs.retry(job.id, "an-admin")


def test_backoff_waits_before_the_next_attempt(make_gateway: GatewayFactory) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    gateway = make_gateway(jobs_backend="ray", jobs_ray_address=down, jobs_retry_seconds=30)
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    (job,) = gateway.jobs.enqueue(add_request(gateway), [python_spec("pass")])
    gateway.jobs.tick()
    gateway.jobs.tick()  # not due yet: no second attempt
    waiting = gateway.jobs.get(job.id)
    assert waiting.attempts == 1 and waiting.next_attempt_at is not None
    assert 25 < (waiting.next_attempt_at - waiting.updated_at).total_seconds() <= 31


def test_a_failing_job_is_retried_and_then_fails_with_its_output(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = make_gateway(jobs_max_attempts=2, **FAST)
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    rid = add_request(gateway)
    count = tmp_path / "tries"
    code = f"open({str(count)!r}, 'a').write('.'); print('no such shard'); raise SystemExit(2)"
    (job,) = gateway.jobs.enqueue(rid, [python_spec(code)])
    failed = settle(gateway, job.id)
    assert (failed.state, failed.attempts) == ("failed", 2)
    assert "exit code 2" in failed.message and "no such shard" in failed.message
    assert count.read_text() == ".."
    assert gateway.erasure.get(rid).state == "failed"


def test_a_job_whose_principal_is_gone_fails_at_once(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**FAST)
    (job,) = gateway.jobs.enqueue(add_request(gateway), [python_spec("pass")])
    gateway.jobs.tick()
    failed = gateway.jobs.get(job.id)
    assert failed.state == "failed" and "cannot mint a token" in failed.message


def test_cancel_stops_a_running_job(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**FAST)
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    (job,) = gateway.jobs.enqueue(
        add_request(gateway), [python_spec("import time; time.sleep(60)")]
    )
    gateway.jobs.tick()
    assert gateway.jobs.get(job.id).state == "submitted"
    started = time.monotonic()
    cancelled = gateway.jobs.cancel(job.id, "an-admin")
    assert cancelled.state == "cancelled" and cancelled.terminal
    gateway.jobs.tick()
    assert gateway.jobs.get(job.id).state == "cancelled"
    assert time.monotonic() - started < 10


def test_local_jobs_wait_for_a_free_slot(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = make_gateway(jobs_max_running=1, **FAST)
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    rid = add_request(gateway)
    gate = tmp_path / "go"
    code = f"import pathlib, time\nwhile not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.05)"
    first, second = gateway.jobs.enqueue(
        rid, [python_spec(code, "run-1"), python_spec(code, "run-2")]
    )
    gateway.jobs.tick()
    states = {j.run_id: j for j in gateway.jobs.for_request(rid)}
    assert states["run-1"].state == "submitted"
    assert states["run-2"].state == "pending"
    assert "waiting for a free slot: 1 local job(s) running" in states["run-2"].message
    assert gateway.erasure.get(rid).state == "running"
    gate.touch()
    assert settle(gateway, first.id).state == "succeeded"
    assert settle(gateway, second.id).state == "succeeded"
    assert gateway.erasure.get(rid).state == "completed"
    assert oct((tmp_path / "home" / "jobs").stat().st_mode & 0o777) == "0o700"


def test_a_job_only_ever_reads_as_a_trainer(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(**FAST)
    gateway.principals.upsert("trainer-1", ["admin"], {})  # the run's principal, no trainer role
    (job,) = gateway.jobs.enqueue(add_request(gateway), [python_spec("pass")])
    gateway.jobs.tick()
    failed = gateway.jobs.get(job.id)
    assert failed.state == "failed" and "does not hold the trainer role" in failed.message
