"""The Ray backend's parts that need no cluster: the entrypoint it sends, and a Jobs API that
cannot be reached (a real closed port). Jobs on a real cluster: tests/integration."""

from __future__ import annotations

import shlex

import pytest

from govern.errors import JobBackendUnavailable
from govern.jobs import JobSpec
from govern.jobs.ray_backend import RayBackend, entrypoint_of
from tests.conftest import free_port


def test_the_entrypoint_quotes_every_argument_and_enters_the_workdir() -> None:
    spec = JobSpec(
        kind="retrain",
        run_id="r",
        principal_id="p",
        argv=("python", "train.py", "--note", "it's; rm -rf /"),
        workdir="/srv/my models",
    )
    entry = entrypoint_of(spec)
    assert entry == "cd '/srv/my models' && python train.py --note 'it'\"'\"'s; rm -rf /'"
    assert shlex.split(entry.split(" && ", 1)[1]) == list(spec.argv)
    assert entrypoint_of(JobSpec(kind="retrain", run_id="r", principal_id="p", argv=("a",))) == "a"


def test_an_unreachable_jobs_api_is_unavailable_with_its_address() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    backend = RayBackend(address)
    spec = JobSpec(kind="retrain", run_id="r", principal_id="p", argv=("true",))
    for call in (
        lambda: backend.submit("job-1", spec, {}),
        lambda: backend.status("job-1"),
        lambda: backend.cancel("job-1"),
    ):
        with pytest.raises(JobBackendUnavailable) as exc:
            call()
        assert exc.value.message.startswith(f"Ray at {address} is unreachable")
