"""Benchmark: erasure requests and unlearning, one run, one JSON line on stdout (also written to
bench/results/erasure.json).

(a) Request to exclusion at 1M rows and 1k runs. A 1M-row dataset (100k data subjects) is
    registered, and 1,000 runs' provenance is made by governed reads under their run ids
    (100 sharded reads, and reads of a contiguous range of rows of random length, as training
    reads look), with recipes for a tenth of them. Then ``POST /v1/erasure-requests`` (the real
    app, in process) for REQUESTS subjects: the call returns once the subject's rows are
    excluded from every read, the request is in the access log, the affected runs are found and
    their jobs enqueued. The figure is the median time from sending the request until a reader
    sees the exclusion (a thread polls the exclusions every read consults, every 2 ms); the
    whole call's latency is reported beside it. Each exclusion is then checked with a governed
    read (untimed).
    The peer is what erasure costs without an exclusion list: rewriting the version's Parquet
    file without the subject's rows (DuckDB ``COPY ... WHERE``), timed for the same subjects.
(b) SISA shard unlearning vs full retraining of the reference model. The reference trainer
    (examples/train_reference.py) trains the demo's ``patient_notes`` once as one model
    (``--strategy full``) and once as SHARDS shard models (``--strategy sisa``), through a real
    Flight server; a subject is erased, and the jobs the unlearning strategies plan are run
    as the local job backend runs them (a subprocess each, reading through Flight):
    the full model's retrain, the sharded model's unlearn (only the shards that held the
    subject's rows) and, for reference, the sharded model's retrain of all its shards.
    Figures: wall time of each job (process start to exit) and the trainer's own training
    time; the speedup is full retrain / shard unlearn.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from fastapi.testclient import TestClient
from pyroaring import BitMap
from report import emit

from govern.api import create_app
from govern.auth import Caller
from govern.catalog import DatasetInfo, parquet_source
from govern.demo import DEMO_DATASETS, load_demo
from govern.flight import FlightServer
from govern.gateway import Gateway, ReadRequest
from govern.jobs.base import JobSpec
from govern.provenance import SubjectRun
from govern.provenance.store import ProvenanceStore
from govern.settings import load_settings
from govern.store import Database
from govern.store.migrate import upgrade
from govern.unlearning.recipes import RecipeBody, RecipeStore
from govern.unlearning.strategies import plan_unlearning

ROOT = Path(__file__).resolve().parents[1]
ROWS = 1_000_000
SUBJECTS = 100_000
RUNS = 1_000
SHARDED_RUNS = 100
REQUESTS = 5
# (b): rows of the demo's patient_notes, before the policy's row filter for the demo trainer.
NOTES_ROWS = 200_000
SHARDS = 8
EPOCHS = 5
ACTOR = "bench"  # who the setup's changes are logged as


def open_gateway(home: Path, **overrides: Any) -> Gateway:
    settings = load_settings(
        home=home, config=home / "none.toml", chain_backend="none", **overrides
    )
    upgrade(settings.resolved_database_url)
    return Gateway.open(settings)


# -- (a) request to exclusion -------------------------------------------------------------------


def big_table(rng: np.random.Generator) -> pa.Table:
    subjects = rng.integers(0, SUBJECTS, ROWS)
    return pa.table(
        {
            "user_id": pa.array([f"u{s:06d}" for s in subjects]),
            "value": pa.array(rng.random(ROWS)),
            "kind": pa.array(rng.choice(["a", "b", "c"], ROWS)),
        }
    )


def exclusion(home: Path) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    gateway = open_gateway(home)
    try:
        commands = gateway.commands
        table = big_table(rng)
        info = commands.register_dataset("events", table, "user_id", ACTOR)
        commands.put_policy(
            None,
            [
                ["p", "r.sub.role == 'trainer'", "events", "read", "training", "True", "allow"],
                ["p", "r.sub.role == 'trainer'", "events", "read", "evaluation", "True", "allow"],
            ],
            ACTOR,
        )
        commands.put_principal("trainer", ["trainer"], {}, ACTOR)
        commands.put_principal("officer", ["compliance"], {}, ACTOR)
        trainer = gateway.decider.authenticate(
            commands.issue_token("trainer", "trainer", ACTOR).token
        )
        # Provenance is written only by governed reads: the store refuses writes outside the
        # gateway's transactions, so the runs' bitmaps can no longer be merged into it
        # directly, and provenance_build_s now times RUNS real reads (it timed those merges).
        # The row sets are of the same kinds, except that a read streams in row-id order, so
        # a run's contiguous range starts at row 0 (its length is drawn as before, so a
        # subject's rows fall in as many runs on average).
        build = time.perf_counter()
        for i in range(RUNS):
            run_id = f"run-{i:04d}"
            if i % 10 == 0:  # a tenth registered recipes (and so get jobs)
                commands.put_recipe(trainer, run_id, recipe_for(info.version))
            if i < SHARDED_RUNS:
                read_rows(gateway, trainer, run_id, shard=(i % 8, 8))
            else:
                start = int(rng.integers(0, ROWS - 50_000))
                length = int(rng.integers(50_000, ROWS - start + 1))
                read_rows(gateway, trainer, run_id, rows=length)
        build_s = time.perf_counter() - build
        assert_runs_recorded(gateway, info)

        users = table.column("user_id").to_pylist()
        picks = [users[int(i)] for i in rng.integers(0, ROWS, REQUESTS)]
        officer_token = commands.issue_token("officer", "compliance", ACTOR).token
        officer = {"Authorization": f"Bearer {officer_token}"}
        latencies, in_effect, affected, jobs = [], [], [], []
        with TestClient(create_app(gateway, close_on_shutdown=False)) as client:
            for subject in picks:
                row = users.index(subject)
                seen: list[float] = []
                stop = threading.Event()
                t0 = time.perf_counter()
                # A reader's view: poll the exclusions every read consults until the row is in.
                poller = threading.Thread(
                    target=watch, args=(gateway, info.version_id, row, t0, seen, stop)
                )
                poller.start()
                r = client.post(
                    "/v1/erasure-requests",
                    json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
                    headers=officer,
                )
                latencies.append(time.perf_counter() - t0)
                stop.set()
                poller.join()
                in_effect.append(seen[0] if seen else latencies[-1])
                assert r.status_code == 202, r.text
                body = r.json()
                affected.append(len(body["affected_runs"]))
                jobs.append(len(body["jobs"]))
                # In effect: a governed read of the version serves none of the subject's rows.
                read = gateway.reads.open(trainer, ReadRequest("events", "evaluation"))
                served = read.to_reader().read_all().column("user_id")
                assert subject not in set(served.to_pylist()), "exclusion not in effect"
        # The peer: remove the rows from the data itself.
        rewrites = []
        for subject in picks:
            out = home / f"rewrite-{subject}.parquet"
            t0 = time.perf_counter()
            duckdb.execute(
                f"COPY (SELECT * FROM {parquet_source(info.path)} WHERE user_id <> ?) "
                f"TO '{out}' (FORMAT parquet)",
                [subject],
            )
            rewrites.append(time.perf_counter() - t0)
            out.unlink()
        exclusion_s = statistics.median(in_effect)
        rewrite_s = statistics.median(rewrites)
        return {
            "rows": ROWS,
            "runs": RUNS,
            "provenance_build_s": round(build_s, 2),
            "requests": REQUESTS,
            "request_to_exclusion_ms_median": round(exclusion_s * 1000, 1),
            "request_to_exclusion_ms_max": round(max(in_effect) * 1000, 1),
            "post_response_ms_median": round(statistics.median(latencies) * 1000, 1),
            "affected_runs_median": statistics.median(affected),
            "jobs_median": statistics.median(jobs),
            "peer_rewrite_parquet_ms_median": round(rewrite_s * 1000, 1),
            "rewrite_over_exclusion": round(rewrite_s / exclusion_s, 2),
        }
    finally:
        gateway.close()


def read_rows(
    gateway: Gateway,
    trainer: Caller,
    run_id: str,
    *,
    shard: tuple[int, int] | None = None,
    rows: int | None = None,
) -> None:
    """A training read of ``events`` under ``run_id``: one shard, or the first ``rows`` rows
    (and the rest of the batch that reaches them; then the read is abandoned, and only what
    was delivered is recorded). One column: the provenance is the same whatever the columns."""
    read = gateway.reads.open(
        trainer, ReadRequest("events", "training", run_id, columns=["value"], shard=shard)
    )
    batches = read.batches()
    sent = 0
    try:
        for batch in batches:  # a batch is delivered when the next one is asked for
            if rows is not None and sent >= rows:
                break
            sent += batch.num_rows
    finally:
        batches.close()


def assert_runs_recorded(gateway: Gateway, info: DatasetInfo) -> None:
    """The reads recorded what was meant: a shard run holds exactly its shard; a range run
    a contiguous range from row 0."""
    for i in (0, SHARDED_RUNS - 1, SHARDED_RUNS, RUNS - 1):
        ids = gateway.queries.run_rows(f"run-{i:04d}", info.version_id)
        if i < SHARDED_RUNS:
            assert ids == BitMap(np.arange(i % 8, ROWS, 8, dtype=np.uint32)), i
        else:
            assert ids == BitMap(range(len(ids))), i
            assert len(ids) >= 50_000, i


def watch(
    gateway: Gateway,
    version_id: int,
    row: int,
    t0: float,
    seen: list[float],
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        if row in gateway.queries.excluded_rows(version_id):
            seen.append(time.perf_counter() - t0)
            return
        time.sleep(0.002)


def recipe_for(version: int) -> RecipeBody:
    return RecipeBody.model_validate(
        {
            "trainer": "examples/train_reference.py",
            "datasets": [{"name": "events", "version": version}],
            "purpose": "training",
            "strategy": "full",
            "output": "/nonexistent/models",
        }
    )


# -- (b) SISA unlearning vs full retraining ----------------------------------------------------


def run_trainer(argv: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """One job as the local backend runs it: a fresh interpreter in the repository."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable if argv[0] == "python" else argv[0], *argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {done.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, out


def unlearning(home: Path) -> dict[str, Any]:
    gateway = open_gateway(home, unlearning_workdir=ROOT)
    flight = FlightServer(gateway, "127.0.0.1", 0)
    try:
        # patient_notes at NOTES_ROWS (the trainer's data); the rest of the demo small.
        notes = next(d for d in DEMO_DATASETS if d.name == "patient_notes")
        gateway.commands.register_dataset(
            notes.name, notes.batches(NOTES_ROWS), notes.subject_column, ACTOR, tags=notes.tags
        )
        load_demo(gateway, scale=0.02)
        token = gateway.commands.issue_token("demo-trainer", "trainer", ACTOR).token
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GOVERN_")},
            "GOVERN_TOKEN": token,
            "GOVERN_FLIGHT_URL": flight.location,
        }
        common = ["--epochs", str(EPOCHS), "--seed", "3"]
        models = home / "models"
        wall_full0, full0 = run_trainer(
            ["python", "examples/train_reference.py", "--run-id", "full", *common,
             "--output", str(models / "full")],
            env,
        )  # fmt: skip
        wall_sisa0, sisa0 = run_trainer(
            ["python", "examples/train_reference.py", "--run-id", "sisa", *common,
             "--strategy", "sisa", "--shards", str(SHARDS), "--output", str(models / "sisa")],
            env,
        )  # fmt: skip
        # A subject whose rows the sharded model read.
        info = gateway.queries.dataset("patient_notes")
        owners = dict(
            duckdb.execute(
                f"SELECT _row_id, patient_id FROM {parquet_source(info.path)}"
            ).fetchall()
        )
        read = gateway.queries.run_rows("sisa.shard-0", info.version_id)
        subject = str(Counter(owners[r] for r in read).most_common(1)[0][0])
        request = gateway.commands.request_erasure(subject, None, "gdpr-art17", ACTOR)
        view = gateway.queries.erasure_request(request.id)
        specs = {s.kind: s for s in view.plan.specs}
        retrain_all = next(
            s for s in retrain_plan(gateway, request.id, view.affected_runs) if s.run_id == "sisa"
        )
        wall_full, full = run_trainer(list(specs["retrain"].argv), env)
        wall_unlearn, unlearn = run_trainer(list(specs["unlearn"].argv), env)
        wall_all, all_shards = run_trainer(list(retrain_all.argv), env)
        return {
            "rows_served": full0["rows_seen"],
            "shards": SHARDS,
            "epochs": EPOCHS,
            "shards_unlearned": len(unlearn["trained_shards"]),
            "initial_train_s": {"full": round(wall_full0, 2), "sisa": round(wall_sisa0, 2)},
            "accuracy": {
                "full": full["held_out_accuracy"],
                "sisa": sisa0["held_out_accuracy"],
            },
            "full_retrain_job_s": round(wall_full, 2),
            "sisa_unlearn_job_s": round(wall_unlearn, 2),
            "sisa_retrain_all_shards_job_s": round(wall_all, 2),
            "full_retrain_train_s": full["train_seconds"],
            "sisa_unlearn_train_s": unlearn["train_seconds"],
            "sisa_retrain_all_shards_train_s": all_shards["train_seconds"],
            "speedup_job": round(wall_full / wall_unlearn, 2),
            # What SISA could give at most: every shard costs the same, fixed costs nothing.
            "speedup_bound": round(SHARDS / len(unlearn["trained_shards"]), 2),
            "speedup_train": round(full["train_seconds"] / unlearn["train_seconds"], 2),
            "speedup_vs_all_shards_train": round(
                all_shards["train_seconds"] / unlearn["train_seconds"], 2
            ),
            "jobs": [_job(s) for s in (specs["retrain"], specs["unlearn"], retrain_all)],
        }
    finally:
        flight.stop(timeout=15)
        gateway.close()


def retrain_plan(gateway: Gateway, request_id: str, runs: list[SubjectRun]) -> list[JobSpec]:
    """The jobs that retrain the affected runs whole, a sharded model every shard (strategy
    ``retrain``: a plan the gateway does not make here). Planning reads the recipes: a
    RecipeStore of our own over the gateway's store, only read."""
    db = Database(gateway.settings.resolved_database_url)
    try:
        recipes = RecipeStore(db, ProvenanceStore(db))
        return list(plan_unlearning(request_id, runs, recipes, mode="retrain", workdir=ROOT).specs)
    finally:
        db.dispose()


def _job(spec: JobSpec) -> dict[str, Any]:
    return {"kind": spec.kind, "run_id": spec.run_id, "argv": " ".join(spec.argv[1:])}


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="govern-bench-erasure-") as tmp:
        a = exclusion(Path(tmp) / "a")
        b = unlearning(Path(tmp) / "b")
    result = {
        "bench": "erasure",
        "exclusion": a,
        "unlearning": b,
        "ratio": b["speedup_job"],
        "total_s": round(time.perf_counter() - started, 1),
    }
    emit("erasure", result)


if __name__ == "__main__":
    main()
