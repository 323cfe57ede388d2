"""The jobs interface: what a job is (``JobSpec``), what a backend does (``JobBackend``), and
the states a job moves through.

Unlearning strategies produce ``JobSpec`` values; ``govern.jobs.service.JobManager`` stores them,
submits them to the configured backend, and follows them to a terminal state. A backend is
stateless between calls: everything needed to find a job again after a restart is the job id
and the ``external_id`` the backend returned, both kept in the store.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "BackendStatus",
    "JobBackend",
    "JobKind",
    "JobSpec",
    "JobState",
]

JobKind = Literal["retrain", "unlearn"]
# pending: stored, not yet accepted by a backend; retrying: a submit failed and will be tried
# again; submitted: the backend accepted it; running; and the three terminal states.
JobState = Literal[
    "pending", "retrying", "submitted", "running", "succeeded", "failed", "cancelled"
]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATES: frozenset[str] = frozenset({"pending", "retrying", "submitted", "running"})


@dataclass(frozen=True)
class JobSpec:
    """One job to run: the command and the resources it needs.

    ``argv[0] == "python"`` means the Python interpreter of the place the job runs (the
    gateway's own ``sys.executable`` for the local backend). ``env`` holds non-secret settings;
    the manager adds a short-lived ``GOVERN_TOKEN`` and ``GOVERN_FLIGHT_URL`` at submit time.
    """

    kind: JobKind
    run_id: str  # the affected training run this job repairs
    principal_id: str  # whose token the job reads with
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 2048
    workdir: str | None = None  # local backend: working directory (default: cwd)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "principal_id": self.principal_id,
            "argv": list(self.argv),
            "env": dict(self.env),
            "gpus": self.gpus,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "workdir": self.workdir,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(
            kind=data["kind"],
            run_id=str(data["run_id"]),
            principal_id=str(data["principal_id"]),
            argv=tuple(str(a) for a in data["argv"]),
            env={str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
            gpus=int(data.get("gpus", 0)),
            cpus=float(data.get("cpus", 1.0)),
            memory_mb=int(data.get("memory_mb", 2048)),
            workdir=data.get("workdir"),
        )


@dataclass(frozen=True)
class BackendStatus:
    """What a backend says of a job: one of the job states, and why."""

    state: JobState
    message: str = ""


class JobBackend(abc.ABC):
    """Runs jobs somewhere. Methods raise ``govern.errors.JobBackendUnavailable`` when the
    backend cannot be reached (the manager retries), and other ``GovernError``s for a job the
    backend refuses (the manager counts an attempt)."""

    name: str = "abstract"

    @abc.abstractmethod
    def submit(self, job_id: str, spec: JobSpec, secret_env: Mapping[str, str]) -> str:
        """Start the job; returns the backend's id for it. Submitting the same ``job_id``
        again must not start a second copy (backends use it as their own id where they can)."""

    @abc.abstractmethod
    def status(self, external_id: str) -> BackendStatus:
        """The job's current state."""

    @abc.abstractmethod
    def cancel(self, external_id: str) -> None:
        """Stop the job if it still runs."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""
