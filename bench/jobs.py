"""Benchmark: one job end to end through govern's job manager, local and on Ray, against
running the same command directly (the peer: ``subprocess.run`` for local; Ray's own
``JobSubmissionClient`` submit-and-poll for Ray).

govern's figure is from ``enqueue`` to the erasure request reading ``completed``: storing the
job, the reconciler noticing it, minting the job's token, submitting through the backend,
polling, and recording the end (``jobs_poll_seconds`` = POLL, the reconciler's interval). The
job is ``python -c pass`` so that the figures are the overhead, not the work.

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

from report import emit

from govern.gateway import Gateway
from govern.jobs import JobSpec
from govern.jobs.ray_local import local_ray_cluster
from govern.settings import load_settings
from govern.store.migrate import upgrade
from govern.store.models import ErasureRequest

POLL = 0.05
COMMAND = ("python", "-c", "pass")


def govern_job(home: Path, backend: str, n: int, **settings: Any) -> list[float]:
    """Seconds from enqueue to a completed request, for n requests of one job each."""
    s = load_settings(
        home=home,
        config=home / "none.toml",
        jobs_backend=backend,
        jobs_poll_seconds=POLL,
        erasure_rewrite=False,
        **settings,
    )
    upgrade(s.resolved_database_url)
    gateway = Gateway.open(s, watch=True, anchor=False)
    times = []
    try:
        gateway.principals.upsert("bench-trainer", ["trainer"], {})
        for i in range(n):
            rid = f"er-bench-{backend}-{i}"
            with gateway.db.session() as session:
                session.add(
                    ErasureRequest(
                        id=rid,
                        subject_id=f"s{i}",
                        datasets=None,
                        legal_basis="bench",
                        state="excluded",
                        excluded_rows=1,
                        requested_by="bench",
                    )
                )
            spec = JobSpec(
                kind="retrain", run_id=f"run-{i}", principal_id="bench-trainer", argv=COMMAND
            )
            started = time.perf_counter()
            gateway.jobs.enqueue(rid, [spec])
            while (state := gateway.erasure.get(rid).state) not in ("completed", "failed"):
                time.sleep(0.005)
            times.append(time.perf_counter() - started)
            assert state == "completed", gateway.erasure.get(rid).message
    finally:
        gateway.close()
    return times


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
