"""Unlearning end to end over a real Flight server: the reference trainer trains and registers
its recipe, a subject is erased, the strategy's job runs as a real subprocess through the local
job backend, and provenance shows the repaired model never read the subject's rows."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient
from pyroaring import BitMap

from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.jobs.base import TERMINAL_STATES, JobSpec
from govern.jobs.local import LocalBackend
from govern.provenance import SubjectLookup
from govern.unlearning.strategies import NO_RECIPE, request_tag
from tests.conftest import auth, wait_for

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 4


def trainer() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_reference", ROOT / "examples" / "train_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_reference"] = module
    spec.loader.exec_module(module)
    return module


def owners(gateway: Gateway) -> dict[int, str]:
    info = gateway.catalog.get("patient_notes")
    rows = duckdb.execute(f"SELECT _row_id, patient_id FROM read_parquet('{info.path}')").fetchall()
    return {int(r): str(p) for r, p in rows}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_job(gateway: Gateway, server: FlightServer, spec: JobSpec, jobs: Path) -> None:
    """The job as the job manager starts it: a subprocess of the local backend with a fresh
    token for the run's owner and the Flight URL in its environment, in the repository."""
    backend = LocalBackend(jobs)
    role = gateway.principals.get(spec.principal_id).roles[0]
    secret = {
        "GOVERN_TOKEN": gateway.tokens.issue(spec.principal_id, role),
        "GOVERN_FLIGHT_URL": server.location,
    }
    job = backend.submit("job-1", dataclasses.replace(spec, workdir=str(ROOT)), secret)
    wait_for(lambda: backend.status(job).state in TERMINAL_STATES, timeout=300)
    status = backend.status(job)
    assert status.state == "succeeded", backend.tail(job)


def served_rows(gateway: Gateway, run_ids: list[str], version_id: int) -> dict[str, BitMap]:
    return {r: gateway.provenance.row_ids(r, version_id) for r in run_ids}


def test_sisa_unlearning_retrains_only_the_shards_that_held_the_subject(
    gateway: Gateway, server: FlightServer, tmp_path: Path
) -> None:
    token = gateway.tokens.issue("demo-trainer", "trainer")
    out = tmp_path / "model"
    first = trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "sisa-1",
            "--strategy", "sisa", "--shards", str(SHARDS), "--epochs", "2",
            "--output", str(out),
        ]
    )  # fmt: skip
    assert first["trained_shards"] == list(range(SHARDS))
    recipe = gateway.recipes.get("sisa-1")
    assert recipe is not None and recipe.recipe.strategy == "sisa"
    assert recipe.recipe.shard_runs == tuple(f"sisa-1.shard-{k}" for k in range(SHARDS))
    info = gateway.catalog.get("patient_notes")
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

    request = gateway.request_erasure(subject, None, "gdpr-art17", "demo-compliance")
    plan = gateway.unlearning_plan(request)
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
    after = gateway.recipes.get("sisa-1")
    assert after is not None
    for k in range(SHARDS):
        if k in hit:
            new_run = f"sisa-1.shard-{k}.u-{tag}"
            assert after.recipe.shard_runs[k] == new_run
            got = gateway.provenance.row_ids(new_run, info.version_id)
            assert not got & subject_rows
            assert got == before[f"sisa-1.shard-{k}"] - subject_rows
            assert digest(out / f"shard-{k}.pt") != files[k]
        else:
            assert after.recipe.shard_runs[k] == f"sisa-1.shard-{k}"
            assert digest(out / f"shard-{k}.pt") == files[k]  # untouched, byte for byte

    lookup = SubjectLookup(gateway.provenance)
    try:
        still = {r.run.id for r in lookup.runs_for_subject(subject)}
    finally:
        lookup.close()
    current = set(after.recipe.shard_runs)
    assert not still & current  # no current shard of the model read the subject's rows

    # Planned again (say after a restart), the request finds nothing left to do.
    again = gateway.unlearning_plan(request)
    assert again.specs == ()
    assert {a.action for a in again.actions} == {"none"}
    assert all("already retrained" in a.reason for a in again.actions)


def test_a_full_retrain_reads_without_the_erased_rows_into_a_new_output(
    gateway: Gateway, server: FlightServer, tmp_path: Path
) -> None:
    token = gateway.tokens.issue("demo-trainer", "trainer")
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
    info = gateway.catalog.get("patient_notes")
    old_rows = gateway.provenance.row_ids("full-1", info.version_id)
    owner = owners(gateway)
    subject = Counter(owner[r] for r in old_rows).most_common(1)[0][0]
    subject_rows = BitMap(r for r, p in owner.items() if p == subject)
    model = digest(out / "model.pt")

    request = gateway.request_erasure(subject, ["patient_notes"], "gdpr-art17", "officer")
    plan = gateway.unlearning_plan(request)
    actions = {a.run_id: (a.action, a.reason) for a in plan.actions}
    assert actions["bare-1"] == ("none", NO_RECIPE)
    assert actions["full-1"][0] == "retrain"
    (spec,) = plan.specs
    tag = request_tag(request.id)
    assert spec.kind == "retrain" and spec.run_id == "full-1"
    assert spec.argv[spec.argv.index("--run-id") + 1] == f"full-1.r-{tag}"

    run_job(gateway, server, spec, tmp_path / "jobs")

    new_rows = gateway.provenance.row_ids(f"full-1.r-{tag}", info.version_id)
    assert new_rows == old_rows - subject_rows and not new_rows & subject_rows
    old = gateway.recipes.get("full-1")
    new = gateway.recipes.get(f"full-1.r-{tag}")
    assert old is not None and old.superseded_by == f"full-1.r-{tag}"
    assert new is not None and new.recipe.replaces == "full-1"
    assert new.recipe.output == f"{out}.r-{tag}"
    assert (Path(new.recipe.output) / "model.pt").is_file()
    assert digest(out / "model.pt") == model  # the old model is left for its owner to retire
    again = {a.run_id: a for a in gateway.unlearning_plan(request).actions}
    assert again["full-1"].action == "none" and "superseded" in again["full-1"].reason


def test_the_streaming_full_trainer_reads_every_served_row_once_per_run(
    gateway: Gateway, server: FlightServer, tmp_path: Path
) -> None:
    token = gateway.tokens.issue("demo-trainer", "trainer")
    read = trainer().main(
        ["--flight-url", server.location, "--token", token, "--run-id", "mem", "--epochs", "2"]
    )
    streamed = trainer().main(
        [
            "--flight-url", server.location, "--token", token, "--run-id", "str",
            "--epochs", "2", "--stream", "--output", str(tmp_path / "s"),
        ]
    )  # fmt: skip
    info = gateway.catalog.get("patient_notes")
    once = gateway.provenance.row_ids("mem", info.version_id)
    assert gateway.provenance.row_ids("str", info.version_id) == once
    assert read["rows_seen"] == len(once)
    assert streamed["rows_seen"] == 2 * len(once)  # the stream is read on every epoch
    assert streamed["held_out_accuracy"] > 0.5 and (tmp_path / "s" / "model.pt").is_file()
    assert gateway.recipes.get("str") is not None and gateway.recipes.get("mem") is None


@pytest.mark.parametrize("strategy", ["sisa"])
def test_the_trainer_refuses_sisa_without_an_output(strategy: str) -> None:
    with pytest.raises(SystemExit):
        trainer().main(["--token", "x", "--strategy", strategy])


def test_an_erasure_request_runs_its_unlearning_job_to_completion(
    gateway: Gateway, server: FlightServer, client: TestClient, tmp_path: Path
) -> None:
    # Jobs reach this test's Flight server and run in the repository (the trainer's path).
    gateway.settings = gateway.settings.model_copy(
        update={"jobs_flight_url": server.location, "unlearning_workdir": ROOT}
    )
    token = gateway.tokens.issue("demo-trainer", "trainer")
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
    info = gateway.catalog.get("patient_notes")
    owner = owners(gateway)
    shard0 = gateway.provenance.row_ids("e2e.shard-0", info.version_id)
    subject = Counter(owner[r] for r in shard0).most_common(1)[0][0]
    subject_rows = BitMap(r for r, p in owner.items() if p == subject)

    officer = auth(gateway.tokens.issue("demo-compliance", "compliance"))
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
        gateway.jobs.tick()
        state: str = client.get(f"/v1/erasure-requests/{body['id']}", headers=officer).json()[
            "state"
        ]
        return state in ("completed", "failed")

    wait_for(finished, timeout=300)
    done = client.get(f"/v1/erasure-requests/{body['id']}", headers=officer).json()
    assert done["state"] == "completed", done
    assert [j["state"] for j in done["jobs"]] == ["succeeded"]
    recipe = gateway.recipes.get("e2e")
    assert recipe is not None
    for shard_run in recipe.recipe.shard_runs:
        assert not gateway.provenance.row_ids(shard_run, info.version_id) & subject_rows
    # Asking again (idempotent) plans nothing new: the shard was already retrained.
    again = client.post(
        "/v1/erasure-requests",
        json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
        headers=officer,
    )
    assert again.status_code == 200 and len(again.json()["jobs"]) == 1
