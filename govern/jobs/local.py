"""The local backend: each job attempt is a process on this machine that outlives the gateway.

A job attempt gets a folder ``GOVERN_HOME/jobs/<external id>/``. Its command is started through
``_wrapper.py`` in a new session: the wrapper writes the command's output to ``output.log`` and
its exit code to ``exit.json``, so a gateway that restarts while the job runs (and so is not its
parent) still learns how it ended. Creating the folder is the submission's lock: submitting the
same id again finds the folder and starts nothing.

The job's environment is built, not inherited: a few variables a program needs to run (PATH,
HOME, locale, the virtual environment), then the spec's ``env``, then the secret variables the
manager passes. Nothing else of the gateway's environment (its own ``GOVERN_*`` secrets
included) reaches the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from govern.errors import BadRequest, JobBackendUnavailable
from govern.jobs.base import BackendStatus, JobBackend, JobSpec

__all__ = ["LocalBackend"]

_WRAPPER = Path(__file__).with_name("_wrapper.py")
_PASS_THROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "CUDA_VISIBLE_DEVICES",
)
_TAIL_BYTES = 2000


class LocalBackend(JobBackend):
    name = "local"

    def __init__(self, root: Path, base_env: Mapping[str, str] | None = None) -> None:
        self.root = root
        # The variables passed through to jobs; os.environ's by default (see the module doc).
        source = os.environ if base_env is None else base_env
        self._base_env = {k: source[k] for k in _PASS_THROUGH if k in source}
        # Our own children, so that they are reaped (a finished child is otherwise a zombie).
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def _folder(self, external_id: str) -> Path:
        if not external_id or "/" in external_id or external_id.startswith("."):
            raise BadRequest(f"invalid local job id {external_id[:80]!r}")
        return self.root / external_id

    def submit(self, job_id: str, spec: JobSpec, secret_env: Mapping[str, str]) -> str:
        folder = self._folder(job_id)
        try:
            # Only the gateway's user may read jobs' output (it can hold training data).
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)
        except FileExistsError:
            return job_id  # submitted before (by us before a restart, or by a replica)
        except OSError as exc:
            raise JobBackendUnavailable(f"cannot create {folder}: {exc}") from exc
        argv = list(spec.argv)
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        workdir = spec.workdir or os.getcwd()
        (folder / "spec.json").write_text(
            json.dumps({"argv": argv, "workdir": workdir, "kind": spec.kind, "run": spec.run_id})
        )
        env = {**self._base_env, **spec.env, **secret_env}
        try:
            proc = subprocess.Popen(  # noqa: S603 - our wrapper; the job's argv is data
                [sys.executable, str(_WRAPPER), str(folder)],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=(folder / "wrapper.log").open("ab"),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            (folder / "exit.json").write_text(json.dumps({"code": 127, "error": str(exc)}))
            return job_id
        tmp = folder / "pid.tmp"
        tmp.write_text(f"{proc.pid} {_start_time(proc.pid)}")
        os.replace(tmp, folder / "pid")
        with self._lock:
            self._children[job_id] = proc
        return job_id

    def status(self, external_id: str) -> BackendStatus:
        folder = self._folder(external_id)
        with self._lock:
            child = self._children.get(external_id)
        if child is not None and child.poll() is not None:
            with self._lock:
                self._children.pop(external_id, None)
        if not folder.is_dir():
            return BackendStatus("failed", f"no local job {external_id} under {self.root}")
        exit_file = folder / "exit.json"
        # Alive is asked before the exit file is read again: the wrapper writes the file before
        # it ends, so a job that ends between the two checks is still seen to have ended.
        if not exit_file.exists() and _alive(folder / "pid"):
            return BackendStatus("running", "")
        if (folder / "cancelled").exists():
            # Checked before the exit file: a job cancelled before its wrapper was ready to pass
            # the signal on ends without one.
            return BackendStatus("cancelled", "cancelled")
        if not exit_file.exists():  # checked again after the liveness test, see above
            return BackendStatus(
                "failed",
                "the job's process ended without recording an exit code "
                "(killed, or the machine restarted)",
            )
        code = json.loads(exit_file.read_text()).get("code")
        if code == 0:
            return BackendStatus("succeeded", "exit code 0")
        return BackendStatus("failed", f"exit code {code}; output ends: {self.tail(external_id)}")

    def tail(self, external_id: str, size: int = _TAIL_BYTES) -> str:
        """The end of the job's output (stdout and stderr together)."""
        log = self._folder(external_id) / "output.log"
        try:
            with log.open("rb") as f:
                f.seek(max(0, log.stat().st_size - size))
                return f.read().decode(errors="replace").strip()[-size:]
        except OSError:
            return ""

    def cancel(self, external_id: str) -> None:
        folder = self._folder(external_id)
        if not folder.is_dir() or (folder / "exit.json").exists():
            return
        (folder / "cancelled").touch()
        pid = _pid(folder / "pid")
        if pid is not None and _alive(folder / "pid"):
            # The wrapper leads the job's process group: both get the signal.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks (Linux), so a reused pid is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    # The command name may hold spaces and parentheses; fields after the last ')' are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid_file: Path) -> bool:
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        # A zombie has ended; a different start time means the pid was reused.
        return fields[0] != "Z" and (started == "?" or fields[19] == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
