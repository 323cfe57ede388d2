"""The SISA unlearn job under Ray: the same JobSpec the strategy plans for the local backend runs
on a real one-node Ray cluster (``ray start --head`` on loopback, through the Jobs API), reads
through Flight with its own token, and replaces only the affected shard."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroaring import BitMap

from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.jobs.ray_backend import RayBackend
from govern.jobs.ray_local import local_ray_cluster
from tests.conftest import wait_for
from tests.integration.test_unlearning import (  # noqa: F401 - repo_gateway is a fixture
    ROOT,
    issue_token,
    owners,
    repo_gateway,
    trainer,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with local_ray_cluster() as address:
        yield address


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_unlearn_job_runs_under_ray(
    repo_gateway: tuple[Gateway, FlightServer],  # noqa: F811
    ray_address: str,
    tmp_path: Path,
) -> None:
    gateway, server = repo_gateway  # jobs are planned to run in the repository
    token = issue_token(gateway, "demo-trainer", "trainer")
    out = tmp_path / "model"
    trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "ray-m",
            "--strategy", "sisa", "--shards", "3", "--epochs", "1", "--output", str(out),
        ]
    )  # fmt: skip
    info = gateway.queries.dataset("patient_notes")
    owner = owners(gateway)
    shard1 = gateway.queries.run_rows("ray-m.shard-1", info.version_id)
    subject = Counter(owner[r] for r in shard1).most_common(1)[0][0]
    subject_rows = BitMap(r for r, p in owner.items() if p == subject)
    files = {k: hashlib.sha256((out / f"shard-{k}.pt").read_bytes()).digest() for k in range(3)}

    request = gateway.commands.request_erasure(subject, None, "gdpr", "officer")
    plan = gateway.queries.erasure_request(request.id).plan
    (spec,) = plan.specs
    assert spec.workdir == str(ROOT)
    backend = RayBackend(ray_address)
    job = f"unlearn-{secrets.token_hex(3)}"
    backend.submit(
        job,
        spec,
        {
            "GOVERN_TOKEN": issue_token(gateway, "demo-trainer", "trainer"),
            "GOVERN_FLIGHT_URL": server.location,
        },
    )
    wait_for(lambda: backend.status(job).state in ("succeeded", "failed"), 300)
    assert backend.status(job).state == "succeeded", backend.logs(job)
    recipe = gateway.queries.recipe(gateway.operator, "ray-m")
    hit = [int(k) for k in spec.argv[spec.argv.index("--only-shards") + 1].split(",")]
    for k in range(3):
        now = hashlib.sha256((out / f"shard-{k}.pt").read_bytes()).digest()
        assert (now != files[k]) == (k in hit)
        read = gateway.queries.run_rows(recipe.recipe.shard_runs[k], info.version_id)
        assert not read & subject_rows
