"""Benchmark: one job end to end through govern's job manager, local and on Ray, against
running the same command directly (the peer: ``subprocess.run`` for local; Ray's own
``JobSubmissionClient`` submit-and-poll for Ray).

govern's figure is from the erasure request to it reading ``completed``: withdrawing the row,
finding the run that read it, planning and storing its retrain job, the reconciler noticing it,
minting the job's token, submitting through the backend, polling, and recording the end
(``jobs_poll_seconds`` = POLL, the reconciler's interval). The run's recipe names a trainer that
does nothing, so that the figures are the overhead, not the work; the peer runs
``python -c pass``.

One run, side by side, one JSON line on stdout (also bench/results/jobs.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from report import emit

from govern.gateway import Gateway, ReadRequest
from govern.gateway.queries import Queries
from govern.jobs.ray_local import local_ray_cluster
from govern.settings import load_settings
from govern.store.migrate import upgrade
from govern.unlearning import ErasureInfo
from govern.unlearning.recipes import RecipeBody, RecipeDatasetBody

POLL = 0.05
COMMAND = ("python", "-c", "pass")
ACTOR = "bench"  # who the setup's changes are logged as


# The trainer a run's recipe names; it does nothing, so the figures are the overhead.
NOOP_TRAINER = "noop_trainer.py"
RULES = [["p", "r.sub.role == 'trainer'", "bench_subjects", "read", "training", "True", "allow"]]


def govern_job(home: Path, backend: str, n: int, **settings: Any) -> list[float]:
    """Seconds from the erasure request to it reading completed, for n requests of one
    retrain job each."""
    home.mkdir(parents=True, exist_ok=True)
    (home / NOOP_TRAINER).write_text("import sys\nsys.exit(0)\n")
    s = load_settings(
        home=home,
        config=home / "none.toml",
        jobs_backend=backend,
        jobs_poll_seconds=POLL,
        erasure_rewrite=False,
        unlearning_trainers=[NOOP_TRAINER],
        unlearning_workdir=home,
        **settings,
    )
    upgrade(s.resolved_database_url)
    gateway = Gateway.open(s, watch=True, anchor=False)
    commands, queries = gateway.commands, gateway.queries
    times = []
    try:
        commands.put_principal("bench-trainer", ["trainer"], {}, ACTOR)
        commands.put_policy(None, RULES, ACTOR)
        trainer = gateway.decider.authenticate(
            commands.issue_token("bench-trainer", "trainer", ACTOR).token
        )
        # One row per data subject s0..s{n-1}; run i reads subject i's row and registers a
        # recipe naming the no-op trainer, so erasing subject i plans one retrain job.
        subjects = pa.table({"subject": [f"s{i}" for i in range(n)]})
        info = commands.register_dataset("bench_subjects", subjects, "subject", ACTOR)
        for i in range(n):
            read = gateway.reads.open(
                trainer,
                ReadRequest("bench_subjects", "training", run_id=f"run-{i}", shard=(i, n)),
            )
            for _ in read.batches():
                pass
            commands.put_recipe(
                trainer,
                f"run-{i}",
                RecipeBody(
                    trainer=NOOP_TRAINER,
                    datasets=[RecipeDatasetBody(name="bench_subjects", version=info.version)],
                    purpose="training",
                    output=str(home / f"model-{i}"),
                ),
            )
        for i in range(n):
            started = time.perf_counter()
            rid = commands.request_erasure(f"s{i}", None, "bench", ACTOR).id
            while (state := request(queries, rid)).state not in ("completed", "failed"):
                time.sleep(0.005)
            times.append(time.perf_counter() - started)
            assert state.state == "completed", state.message
            assert [j.state for j in queries.jobs(rid)] == ["succeeded"], "the job did not run"
    finally:
        gateway.close()
    return times


def request(queries: Queries, rid: str) -> ErasureInfo:
    """The request's state rolled up from its jobs. (``queries.erasure_request`` would also
    look up the affected runs and plan, each time: too heavy to poll every 5 ms.)"""
    return next(r for r in queries.erasure_requests() if r.id == rid)


def direct_local(n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([sys.executable, *COMMAND[1:]], check=True)
        times.append(time.perf_counter() - started)
    return times


def direct_ray(address: str, n: int) -> list[float]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        sid = client.submit_job(entrypoint=" ".join(COMMAND), entrypoint_num_cpus=1)
        while (status := client.get_job_status(sid)) not in (
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
        ):
            time.sleep(POLL)
        times.append(time.perf_counter() - started)
        assert status == JobStatus.SUCCEEDED
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="jobs timed per side")
    parser.add_argument("--part", choices=["all", "local", "ray"], default="all")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "jobs", "cpus": os.cpu_count(), "poll_s": POLL}
    if args.part in ("all", "local"):
        with tempfile.TemporaryDirectory() as tmp:
            g = summary(govern_job(Path(tmp), "local", args.runs))
        d = summary(direct_local(args.runs))
        result["local"] = {
            "govern": g,
            "subprocess": d,
            "overhead_s": round(g["median_s"] - d["median_s"], 4),
            "ratio": round(g["median_s"] / d["median_s"], 2),
        }
    if args.part in ("all", "ray"):
        with local_ray_cluster() as address, tempfile.TemporaryDirectory() as tmp:
            d = summary(direct_ray(address, args.runs))
            g = summary(govern_job(Path(tmp), "ray", args.runs, jobs_ray_address=address))
        result["ray"] = {
            "govern": g,
            "ray_client": d,
            "overhead_s": round(g["median_s"] - d["median_s"], 4),
            "ratio": round(g["median_s"] / d["median_s"], 2),
        }
    emit("jobs", result)


if __name__ == "__main__":
    main()
