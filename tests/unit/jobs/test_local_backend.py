"""The local backend with real processes: outcomes, output, idempotent submits, cancel, a job
followed by a backend that did not start it, and an environment that keeps the gateway's
secrets out."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from govern.jobs import JobSpec
from govern.jobs.base import BackendStatus
from govern.jobs.local import LocalBackend
from tests.conftest import wait_for


def spec(code: str, **kw: object) -> JobSpec:
    return JobSpec(
        kind="retrain", run_id="run-1", principal_id="p", argv=("python", "-c", code), **kw
    )  # type: ignore[arg-type]


def ended(backend: LocalBackend, external_id: str, timeout: float = 20) -> BackendStatus:
    wait_for(lambda: backend.status(external_id).state not in ("running", "submitted"), timeout)
    return backend.status(external_id)


def test_a_job_that_exits_zero_succeeds_and_its_output_is_kept(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    ext = backend.submit("j-ok", spec("print('hello from the job')"), {})
    assert ext == "j-ok"
    assert ended(backend, ext) == BackendStatus("succeeded", "exit code 0")
    assert "hello from the job" in backend.tail(ext)
    assert (tmp_path / "jobs" / "j-ok" / "exit.json").exists()


def test_a_failing_job_reports_its_exit_code_and_the_end_of_its_output(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    ext = backend.submit("j-bad", spec("import sys; print('boom: no data'); sys.exit(3)"), {})
    status = ended(backend, ext)
    assert status.state == "failed"
    assert "exit code 3" in status.message and "boom: no data" in status.message


def test_a_command_that_cannot_start_fails_with_a_reason(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    bad = JobSpec(kind="unlearn", run_id="r", principal_id="p", argv=("/no/such/trainer",))
    status = ended(backend, backend.submit("j-missing", bad, {}))
    assert status.state == "failed" and "exit code 127" in status.message
    assert "cannot start" in status.message


def test_submitting_the_same_id_twice_runs_the_job_once(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    code = f"open({str(marker)!r}, 'a').write('x\\n')"
    backend = LocalBackend(tmp_path / "jobs")
    backend.submit("j-once", spec(code), {})
    backend.submit("j-once", spec(code), {})
    # A second backend over the same folder, as after a gateway restart.
    LocalBackend(tmp_path / "jobs").submit("j-once", spec(code), {})
    assert ended(backend, "j-once").state == "succeeded"
    assert marker.read_text() == "x\n"


def test_a_backend_that_did_not_start_a_job_learns_how_it_ended(tmp_path: Path) -> None:
    first = LocalBackend(tmp_path / "jobs")
    ext = first.submit("j-restart", spec("import time; time.sleep(1.0)"), {})
    later = LocalBackend(tmp_path / "jobs")
    assert later.status(ext).state == "running"
    assert ended(later, ext).state == "succeeded"


def test_the_job_gets_the_secret_env_and_spec_env_but_not_the_gateways_secrets(
    tmp_path: Path,
) -> None:
    out = tmp_path / "env.txt"
    code = (
        "import os; "
        f"open({str(out)!r}, 'w').write(repr(sorted((k, v) for k, v in os.environ.items() "
        "if k.startswith(('GOVERN', 'SEED', 'PATH')))))"
    )
    base = {"PATH": "/usr/bin:/bin", "GOVERN_SIGNING_SECRET": "s3cret-of-the-gateway"}
    backend = LocalBackend(tmp_path / "jobs", base_env=base)
    ext = backend.submit("j-env", spec(code, env={"SEED": "7"}), {"GOVERN_TOKEN": "tok"})
    assert ended(backend, ext).state == "succeeded"
    seen = dict(eval(out.read_text()))
    assert seen == {"GOVERN_TOKEN": "tok", "SEED": "7", "PATH": "/usr/bin:/bin"}
    # The token is not written anywhere under the job's folder.
    for f in (tmp_path / "jobs" / "j-env").iterdir():
        assert b"tok'" not in f.read_bytes() and b'"tok"' not in f.read_bytes()


def test_the_job_runs_in_its_workdir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    backend = LocalBackend(tmp_path / "jobs")
    ext = backend.submit("j-cwd", spec("open('here.txt', 'w').write('ok')", workdir=str(work)), {})
    assert ended(backend, ext).state == "succeeded"
    assert (work / "here.txt").read_text() == "ok"


def test_cancel_stops_the_job_and_its_children(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    ext = backend.submit("j-cancel", spec("import time; time.sleep(60)"), {})
    assert backend.status(ext).state == "running"
    started = time.monotonic()
    backend.cancel(ext)
    assert ended(backend, ext).state == "cancelled"
    assert time.monotonic() - started < 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and killpg")
def test_a_job_whose_process_was_killed_is_failed_not_running_forever(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "jobs")
    ext = backend.submit("j-killed", spec("import time; time.sleep(60)"), {})
    pid = int((tmp_path / "jobs" / ext / "pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)  # no chance to record an exit code
    status = ended(LocalBackend(tmp_path / "jobs"), ext)
    assert status.state == "failed" and "without recording an exit code" in status.message
    backend.status(ext)  # reaps our child


def test_job_ids_cannot_escape_the_jobs_folder(tmp_path: Path) -> None:
    from govern.errors import BadRequest

    backend = LocalBackend(tmp_path / "jobs")
    for bad in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(BadRequest):
            backend.status(bad)
