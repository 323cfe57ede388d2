"""The Ray backend against a real Ray cluster on loopback (``ray start --head``, started for
this module and stopped at its end): a job runs there, reads governed data through Flight with
its minted token, and its state flows back to the erasure request; while the cluster's Jobs
API cannot be reached the job waits and retries with the reason, and it runs once it can."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import govern_connect
import pytest

from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.jobs import JobSpec
from govern.jobs.ray_backend import RayBackend
from govern.jobs.ray_local import local_ray_cluster
from govern.settings import load_settings
from govern.store.migrate import upgrade
from tests.conftest import TEST_ACTOR, free_port, wait_for
from tests.integration.test_jobs import owners, reader_settings, register_reader, retrain_job
from tests.unit.flight.serving import load_small_demo

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A one-CPU Ray head on 127.0.0.1 for this module, stopped (its own process group only)
    at the end."""
    with local_ray_cluster() as address:
        yield address


class Forwarder:
    """A TCP port that forwards to the Ray dashboard once opened: the Jobs API 'comes up'."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.port = free_port()
        self._server: socket.socket | None = None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[object]:
    opened: list[Gateway] = []

    def make(**overrides: object) -> Gateway:
        settings = load_settings(
            home=tmp_path / "home",
            config=tmp_path / "none.toml",
            jobs_backend="ray",
            jobs_poll_seconds=0.2,
            **overrides,
        )
        upgrade(settings.resolved_database_url)
        gateway = Gateway.open(settings, watch=True, anchor=False)
        opened.append(gateway)
        return gateway

    yield make
    for gateway in opened:
        gateway.close()


def test_a_ray_job_succeeds_and_is_found_again_by_its_submission_id(ray_address: str) -> None:
    backend = RayBackend(ray_address)
    spec = JobSpec(
        kind="retrain",
        run_id="run-x",
        principal_id="p",
        argv=("python", "-c", "import os; print('ray job sees', os.environ['GOVERN_TOKEN'])"),
    )
    ext = f"job-ray-{secrets.token_hex(3)}"
    assert backend.submit(ext, spec, {"GOVERN_TOKEN": "tok-1"}) == ext
    # The same id again (a restart, a replica) starts nothing new.
    assert backend.submit(ext, spec, {"GOVERN_TOKEN": "tok-1"}) == ext
    wait_for(lambda: backend.status(ext).state in ("succeeded", "failed"), 120)
    assert backend.status(ext).state == "succeeded", backend.logs(ext)
    assert "ray job sees tok-1" in backend.logs(ext)
    failing = JobSpec(
        kind="retrain", run_id="r", principal_id="p", argv=("python", "-c", "raise SystemExit(4)")
    )
    bad = f"job-ray-{secrets.token_hex(3)}"
    backend.submit(bad, failing, {})
    wait_for(lambda: backend.status(bad).state in ("succeeded", "failed"), 120)
    status = backend.status(bad)
    assert status.state == "failed" and "exit code 4" in status.message
    assert backend.status("job-never-submitted").state == "failed"


def test_a_ray_job_asks_for_its_gpus(ray_address: str) -> None:
    backend = RayBackend(ray_address)

    def spec(gpus: int) -> JobSpec:
        return JobSpec(
            kind="unlearn",
            run_id=f"run-{gpus}",
            principal_id="p",
            argv=("python", "-c", "print('ran')"),
            gpus=gpus,
            cpus=0.5,
            memory_mb=256,
        )

    gpu, cpu = (f"job-ray-{secrets.token_hex(3)}" for _ in range(2))
    backend.submit(gpu, spec(1), {})
    backend.submit(cpu, spec(0), {})
    # This cluster has no GPU: the same job without one runs and ends while the GPU job waits.
    wait_for(lambda: backend.status(cpu).state == "succeeded", 120)
    waiting = backend.status(gpu)
    assert waiting.state == "submitted" and "waiting for resources" in waiting.message
    # Ray takes the stop now and applies it when the job's supervisor can start (see jobs.md).
    backend.cancel(gpu)


def test_a_ray_job_reads_through_flight_and_completes_the_request_after_ray_comes_up(
    ray_address: str, make_gateway: object, tmp_path: Path
) -> None:
    forwarder = Forwarder(ray_address)  # closed: the Jobs API is down
    port = free_port()
    gateway = make_gateway(  # type: ignore[operator]
        jobs_ray_address=f"http://127.0.0.1:{forwarder.port}",
        jobs_retry_seconds=0.5,
        jobs_max_attempts=10,
        flight_port=port,
        **reader_settings(tmp_path / "work"),
    )
    load_small_demo(gateway)
    owner = owners(gateway)
    server = FlightServer(gateway, "127.0.0.1", port)
    try:
        trainer = gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
        before = govern_connect.connect(server.location, trainer).read(
            "patient_notes", purpose="training", run_id="run-ray"
        )
        register_reader(gateway, trainer, "run-ray", tmp_path / "ray-read.json")
        subject = owner[before.column("_row_id")[0].as_py()]
        # The request plans the retrain of run-ray, which the jobs backend (Ray, down) runs.
        info = gateway.commands.request_erasure(subject, None, "gdpr-art17", TEST_ACTOR)
        job_id, _, out = retrain_job(gateway, info.id)
        wait_for(lambda: gateway.queries.job(job_id).state == "retrying", 30)
        waiting = gateway.queries.job(job_id)
        assert "unreachable" in waiting.message and str(forwarder.port) in waiting.message
        assert gateway.queries.erasure_request(info.id).info.state == "excluded"

        forwarder.open()  # the Jobs API is back
        wait_for(lambda: gateway.queries.job(job_id).terminal, 180)
        done = gateway.queries.job(job_id)
        assert done.state == "succeeded", done.message
        assert done.backend == "ray" and done.attempts >= 2
        assert gateway.queries.erasure_request(info.id).info.state == "completed"
        read = json.loads(out.read_text())["ids"]
        assert read and subject not in {owner[i] for i in read}
    finally:
        forwarder.close()
        assert server.stop(timeout=15)
