"""The Ray backend: jobs go to a Ray cluster through its Jobs API (the dashboard's REST API).

The submission id is the job attempt's id, so submitting it again after a gateway restart (or
from a second replica) is refused by Ray as a duplicate and starts nothing; that refusal is
taken as success. Resources map to the entrypoint's own request (``entrypoint_num_cpus``,
``entrypoint_num_gpus``, ``entrypoint_memory``); the job's environment travels in
``runtime_env.env_vars``. The command runs on the cluster's head node: ``python`` there is the
cluster's interpreter, and a ``workdir`` must exist on that node (a shared filesystem or the
image), since nothing is uploaded.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from govern.errors import GovernError, JobBackendUnavailable
from govern.jobs.base import BackendStatus, JobBackend, JobSpec, JobState

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

__all__ = ["RayBackend", "entrypoint_of"]

_STATES: dict[str, JobState] = {
    "PENDING": "submitted",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "cancelled",
}


def _server_error(exc: RuntimeError) -> bool:
    """The SDK's "Request failed with status code 5xx" (its only signal of the status)."""
    return re.search(r"status code 5\d\d", str(exc)) is not None


def entrypoint_of(spec: JobSpec) -> str:
    """The shell command Ray runs: the argv, quoted, after a ``cd`` into the workdir if any."""
    command = shlex.join(spec.argv)
    return f"cd {shlex.quote(spec.workdir)} && {command}" if spec.workdir else command


class RayBackend(JobBackend):
    name = "ray"

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: JobSubmissionClient | None = None
        self._lock = threading.Lock()

    def _connect(self) -> JobSubmissionClient:
        from ray.job_submission import JobSubmissionClient

        with self._lock:
            if self._client is None:
                try:
                    # The constructor checks the cluster's version: it fails when Ray is down.
                    self._client = JobSubmissionClient(self.address)
                except (ConnectionError, OSError, RuntimeError) as exc:
                    raise self._down(exc) from exc
            return self._client

    def _down(self, exc: BaseException) -> JobBackendUnavailable:
        text = str(exc).strip()
        with_reason = text.splitlines()[0][:300] if text else type(exc).__name__
        return JobBackendUnavailable(
            f"Ray at {self.address} is unreachable: {with_reason}",
            details={"address": self.address},
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        client = self._connect()
        try:
            return fn(client, *args, **kwargs)
        except (ConnectionError, OSError) as exc:  # requests' errors are OSErrors
            with self._lock:
                self._client = None  # reconnect (and re-check the version) next time
            raise self._down(exc) from exc

    def submit(self, job_id: str, spec: JobSpec, secret_env: Mapping[str, str]) -> str:
        def run(client: JobSubmissionClient) -> str:
            try:
                return str(
                    client.submit_job(
                        entrypoint=entrypoint_of(spec),
                        submission_id=job_id,
                        runtime_env={"env_vars": {**spec.env, **secret_env}},
                        metadata={"govern_job": job_id, "run_id": spec.run_id[:200]},
                        entrypoint_num_cpus=spec.cpus,
                        entrypoint_num_gpus=spec.gpus or None,
                        entrypoint_memory=spec.memory_mb * 1024 * 1024,
                    )
                )
            except RuntimeError as exc:
                if "already exists" in str(exc):
                    return job_id  # submitted before: Ray keeps submission ids unique
                if _server_error(exc):  # the cluster is up but not able to take jobs now
                    raise self._down(exc) from exc
                raise GovernError(f"Ray refused job {job_id}: {str(exc)[:500]}") from exc

        result: str = self._call(run)
        return result

    def status(self, external_id: str) -> BackendStatus:
        def run(client: JobSubmissionClient) -> BackendStatus:
            try:
                info = client.get_job_info(external_id)
            except RuntimeError as exc:
                if "does not exist" in str(exc) or "404" in str(exc):
                    return BackendStatus("failed", f"Ray has no job {external_id}")
                raise JobBackendUnavailable(f"Ray status of {external_id}: {exc}") from exc
            state = _STATES.get(str(info.status), "running")
            message = info.message or ""
            if state == "failed" and info.driver_exit_code is not None:
                message = f"exit code {info.driver_exit_code}: {message}"
            return BackendStatus(state, message[:1000])

        result: BackendStatus = self._call(run)
        return result

    def cancel(self, external_id: str) -> None:
        def run(client: JobSubmissionClient) -> None:
            try:
                client.stop_job(external_id)
            except RuntimeError as exc:
                if "does not exist" not in str(exc):
                    raise GovernError(f"Ray could not stop {external_id}: {exc}") from exc

        self._call(run)

    def logs(self, external_id: str) -> str:
        def run(client: JobSubmissionClient) -> str:
            return str(client.get_job_logs(external_id))

        result: str = self._call(run)
        return result

    def close(self) -> None:
        with self._lock:
            self._client = None
