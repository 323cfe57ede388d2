"""Unlearning end to end over a real Flight server: the reference trainer trains and registers
its recipe, a subject is erased, the strategy's job runs as a real subprocess through the local
job backend, and provenance shows the repaired model never read the subject's rows."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from pyroaring import BitMap

from govern.api import create_app
from govern.errors import NotFound
from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.jobs.base import TERMINAL_STATES, JobSpec
from govern.jobs.local import LocalBackend
from govern.settings import Settings
from govern.store.migrate import upgrade
from govern.unlearning import ErasureInfo
from govern.unlearning.recipes import RecipeInfo
from govern.unlearning.strategies import NO_RECIPE, UnlearningPlan, request_tag
from tests.conftest import TEST_ACTOR, auth, free_port, wait_for
from tests.reference_trainer import reference_trainer as trainer
from tests.unit.flight.serving import load_small_demo

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 4


@pytest.fixture
def repo_gateway(settings: Settings) -> Iterator[tuple[Gateway, FlightServer]]:
    """A gateway over the small demo whose jobs reach its own Flight server and run in the
    repository (the trainer's path), and that server."""
    port = free_port()
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(
        settings.model_copy(update={"flight_port": port, "unlearning_workdir": ROOT})
    )
    try:
        load_small_demo(gateway)
        server = FlightServer(gateway, "127.0.0.1", port)
        try:
            yield gateway, server
        finally:
            assert server.stop(timeout=15), "Flight server did not stop in time"
    finally:
        gateway.close()


@pytest.fixture
def repo_client(repo_gateway: tuple[Gateway, FlightServer]) -> Iterator[TestClient]:
    with TestClient(create_app(repo_gateway[0], close_on_shutdown=False)) as c:
        yield c


def issue_token(gateway: Gateway, subject: str, role: str) -> str:
    return gateway.commands.issue_token(subject, role, TEST_ACTOR).token


def recipe_of(gateway: Gateway, run_id: str) -> RecipeInfo:
    return gateway.queries.recipe(gateway.operator, run_id)


def plan_of(gateway: Gateway, request: ErasureInfo) -> UnlearningPlan:
    return gateway.queries.erasure_request(request.id).plan


def owners(gateway: Gateway) -> dict[int, str]:
    info = gateway.queries.dataset("patient_notes")
    rows = duckdb.execute(f"SELECT _row_id, patient_id FROM read_parquet('{info.path}')").fetchall()
    return {int(r): str(p) for r, p in rows}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_job(gateway: Gateway, server: FlightServer, spec: JobSpec, jobs: Path) -> None:
    """The job as the job manager starts it: a subprocess of the local backend with a fresh
    token for the run's owner and the Flight URL in its environment, in the repository."""
    backend = LocalBackend(jobs)
    role = gateway.queries.principal(spec.principal_id).roles[0]
    secret = {
        "GOVERN_TOKEN": issue_token(gateway, spec.principal_id, role),
        "GOVERN_FLIGHT_URL": server.location,
    }
    job = backend.submit("job-1", dataclasses.replace(spec, workdir=str(ROOT)), secret)
    wait_for(lambda: backend.status(job).state in TERMINAL_STATES, timeout=300)
    status = backend.status(job)
    assert status.state == "succeeded", backend.tail(job)


def served_rows(gateway: Gateway, run_ids: list[str], version_id: int) -> dict[str, BitMap]:
    return {r: gateway.queries.run_rows(r, version_id) for r in run_ids}


def test_sisa_unlearning_retrains_only_the_shards_that_held_the_subject(
    gateway: Gateway, server: FlightServer, tmp_path: Path
) -> None:
    token = issue_token(gateway, "demo-trainer", "trainer")
    out = tmp_path / "model"
    first = trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "sisa-1",
            "--strategy", "sisa", "--shards", str(SHARDS), "--epochs", "2",
            "--output", str(out),
        ]
    )  # fmt: skip
    assert first["trained_shards"] == list(range(SHARDS))
    recipe = recipe_of(gateway, "sisa-1")
    assert recipe.recipe.strategy == "sisa"
    assert recipe.recipe.shard_runs == tuple(f"sisa-1.shard-{k}" for k in range(SHARDS))
    info = gateway.queries.dataset("patient_notes")
    before = served_rows(gateway, list(recipe.recipe.shard_runs), info.version_id)
    for shard_run, rows in before.items():
        assert rows and all(r % SHARDS == int(shard_run.rsplit("-", 1)[1]) for r in rows)

    # A subject whose served rows sit in some shards but not all.
    owner = owners(gateway)
    served = BitMap().union(*before.values())
    per_subject = Counter(owner[r] for r in served)
    subject = next(
        s
        for s, _ in per_subject.most_common()
        if 0 < len({r % SHARDS for r in served if owner[r] == s}) < SHARDS
    )
    subject_rows = BitMap(r for r, p in owner.items() if p == subject)
    hit = sorted({r % SHARDS for r in served & subject_rows})
    files = {k: digest(out / f"shard-{k}.pt") for k in range(SHARDS)}

    request = gateway.commands.request_erasure(subject, None, "gdpr-art17", "demo-compliance")
    plan = plan_of(gateway, request)
    (spec,) = plan.specs
    assert (spec.kind, spec.run_id, spec.principal_id) == ("unlearn", "sisa-1", "demo-trainer")
    assert spec.argv[:2] == ("python", "examples/train_reference.py")
    assert spec.argv[spec.argv.index("--only-shards") + 1] == ",".join(map(str, hit))
    assert {a.run_id: a.action for a in plan.actions} == {
        f"sisa-1.shard-{k}": "unlearn" for k in hit
    }

    run_job(gateway, server, spec, tmp_path / "jobs")

    # The recipe now names new runs for the retrained shards, and they read exactly the old
    # shard's rows without the subject's.
    tag = request_tag(request.id)
    after = recipe_of(gateway, "sisa-1")
    for k in range(SHARDS):
        if k in hit:
            new_run = f"sisa-1.shard-{k}.u-{tag}"
            assert after.recipe.shard_runs[k] == new_run
            got = gateway.queries.run_rows(new_run, info.version_id)
            assert not got & subject_rows
            assert got == before[f"sisa-1.shard-{k}"] - subject_rows
            assert digest(out / f"shard-{k}.pt") != files[k]
        else:
            assert after.recipe.shard_runs[k] == f"sisa-1.shard-{k}"
            assert digest(out / f"shard-{k}.pt") == files[k]  # untouched, byte for byte

    still = {r.run.id for r in gateway.queries.runs_for_subject(subject)}
    current = set(after.recipe.shard_runs)
    assert not still & current  # no current shard of the model read the subject's rows

    # Planned again (say after a restart), the request finds nothing left to do.
    again = plan_of(gateway, request)
    assert again.specs == ()
    assert {a.action for a in again.actions} == {"none"}
    assert all("already retrained" in a.reason for a in again.actions)


def test_a_full_retrain_reads_without_the_erased_rows_into_a_new_output(
    gateway: Gateway, server: FlightServer, tmp_path: Path
) -> None:
    token = issue_token(gateway, "demo-trainer", "trainer")
    out = tmp_path / "full"
    trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "full-1",
            "--epochs", "1", "--output", str(out),
        ]
    )  # fmt: skip
    # A second run that registered no recipe: listed, with the reason, and no job.
    trainer().main(
        ["--flight-url", server.location, "--token", token, "--run-id", "bare-1", "--epochs", "1"]
    )
    info = gateway.queries.dataset("patient_notes")
    old_rows = gateway.queries.run_rows("full-1", info.version_id)
    owner = owners(gateway)
    subject = Counter(owner[r] for r in old_rows).most_common(1)[0][0]
    subject_rows = BitMap(r for r, p in owner.items() if p == subject)
    model = digest(out / "model.pt")

    request = gateway.commands.request_erasure(subject, ["patient_notes"], "gdpr-art17", "officer")
    plan = plan_of(gateway, request)
    actions = {a.run_id: (a.action, a.reason) for a in plan.actions}
    assert actions["bare-1"] == ("none", NO_RECIPE)
    assert actions["full-1"][0] == "retrain"
    (spec,) = plan.specs
    tag = request_tag(request.id)
    assert spec.kind == "retrain" and spec.run_id == "full-1"
    assert spec.argv[spec.argv.index("--run-id") + 1] == f"full-1.r-{tag}"

    run_job(gateway, server, spec, tmp_path / "jobs")

    new_rows = gateway.queries.run_rows(f"full-1.r-{tag}", info.version_id)
    assert new_rows == old_rows - subject_rows and not new_rows & subject_rows
    old = recipe_of(gateway, "full-1")
    new = recipe_of(gateway, f"full-1.r-{tag}")
    assert old.superseded_by == f"full-1.r-{tag}"
    assert new.recipe.replaces == "full-1"
    assert new.recipe.output == f"{out}.r-{tag}"
    assert (Path(new.recipe.output) / "model.pt").is_file()
    assert digest(out / "model.pt") == model  # the old model is left for its owner to retire
    again = {a.run_id: a for a in plan_of(gateway, request).actions}
    assert again["full-1"].action == "none" and "superseded" in again["full-1"].reason


def test_the_streaming_full_trainer_reads_every_served_row_once_per_run(
    gateway: Gateway, server: FlightServer, tmp_path: Path
) -> None:
    token = issue_token(gateway, "demo-trainer", "trainer")
    read = trainer().main(
        ["--flight-url", server.location, "--token", token, "--run-id", "mem", "--epochs", "2"]
    )
    streamed = trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "str",
            "--epochs", "2", "--stream", "--output", str(tmp_path / "s"),
        ]
    )  # fmt: skip
    info = gateway.queries.dataset("patient_notes")
    once = gateway.queries.run_rows("mem", info.version_id)
    assert gateway.queries.run_rows("str", info.version_id) == once
    assert read["rows_seen"] == len(once)
    assert streamed["rows_seen"] == 2 * len(once)  # the stream is read on every epoch
    assert streamed["held_out_accuracy"] > 0.5 and (tmp_path / "s" / "model.pt").is_file()
    assert recipe_of(gateway, "str").run_id == "str"
    with pytest.raises(NotFound):
        recipe_of(gateway, "mem")


@pytest.mark.parametrize("strategy", ["sisa"])
def test_the_trainer_refuses_sisa_without_an_output(strategy: str) -> None:
    with pytest.raises(SystemExit):
        trainer().main(["--token", "x", "--strategy", strategy])


def test_an_erasure_request_runs_its_unlearning_job_to_completion(
    repo_gateway: tuple[Gateway, FlightServer], repo_client: TestClient, tmp_path: Path
) -> None:
    # Jobs reach this test's Flight server and run in the repository (the trainer's path).
    (gateway, server), client = repo_gateway, repo_client
    token = issue_token(gateway, "demo-trainer", "trainer")
    out = tmp_path / "model"
    trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "e2e",
            "--strategy", "sisa", "--shards", str(SHARDS), "--epochs", "1",
            "--output", str(out),
        ]
    )  # fmt: skip
    # One more run that read the same data but cannot be retrained.
    trainer().main(
        ["--flight-url", server.location, "--token", token, "--run-id", "bare", "--epochs", "1"]
    )
    info = gateway.queries.dataset("patient_notes")
    owner = owners(gateway)
    shard0 = gateway.queries.run_rows("e2e.shard-0", info.version_id)
    subject = Counter(owner[r] for r in shard0).most_common(1)[0][0]
    subject_rows = BitMap(r for r, p in owner.items() if p == subject)

    officer = auth(issue_token(gateway, "demo-compliance", "compliance"))
    r = client.post(
        "/v1/erasure-requests",
        json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
        headers=officer,
    )
    assert r.status_code == 202, r.text
    body = r.json()
    (job,) = body["jobs"]
    assert (job["kind"], job["run_id"]) == ("unlearn", "e2e")
    notes = {a["run_id"]: a["unlearning"] for a in body["affected_runs"]}
    assert notes["bare"]["action"] == "none" and notes["bare"]["reason"] == NO_RECIPE
    assert notes["e2e.shard-0"]["action"] == "unlearn"

    def finished() -> bool:
        gateway.run_jobs_once()
        state: str = client.get(f"/v1/erasure-requests/{body['id']}", headers=officer).json()[
            "state"
        ]
        return state in ("completed", "failed")

    wait_for(finished, timeout=300)
    done = client.get(f"/v1/erasure-requests/{body['id']}", headers=officer).json()
    assert done["state"] == "completed", done
    # Completed: the subject id in clear is gone, the commitment stays.
    assert done["subject_id"] is None and done["subject_commitment"] == body["subject_commitment"]
    assert body["subject_id"] == subject  # kept while the request had work left
    assert [j["state"] for j in done["jobs"]] == ["succeeded"]
    recipe = recipe_of(gateway, "e2e")
    for shard_run in recipe.recipe.shard_runs:
        assert not gateway.queries.run_rows(shard_run, info.version_id) & subject_rows
    # Asking again (idempotent) plans nothing new: the shard was already retrained.
    again = client.post(
        "/v1/erasure-requests",
        json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
        headers=officer,
    )
    assert again.status_code == 200 and len(again.json()["jobs"]) == 1
