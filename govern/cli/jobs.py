"""``govern jobs``: the retrain and unlearn jobs that erasure requests started."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from govern.gateway import Gateway
from govern.jobs import JobInfo
from govern.settings import load_settings

__all__ = ["jobs_app", "jobs_table"]

jobs_app = typer.Typer(help="Retrain and unlearn jobs of erasure requests.", no_args_is_help=True)

out = Console()


def _open() -> Gateway:
    return Gateway.open(load_settings())


def jobs_table(jobs: list[JobInfo]) -> Table:
    table = Table("id", "request", "kind", "run", "backend", "state", "attempts", "message")
    for j in jobs:
        table.add_row(
            j.id,
            j.request_id or "",
            j.kind,
            j.run_id,
            j.backend,
            j.state,
            str(j.attempts),
            j.message[:120],
        )
    return table


@jobs_app.command("list")
def jobs_list(
    request: Annotated[
        str | None, typer.Option("--request", help="Only the jobs of this erasure request.")
    ] = None,
) -> None:
    """Jobs, newest first (or those of one erasure request)."""
    gateway = _open()
    try:
        jobs = gateway.queries.jobs(request)
        out.print(jobs_table(jobs))
    finally:
        gateway.close()


@jobs_app.command("show")
def jobs_show(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """One job: its state, attempts, command and, for local jobs, the end of its output."""
    gateway = _open()
    try:
        job = gateway.queries.job(job_id)
        for key, value in job.to_json().items():
            out.print(f"{key}: {value if value is not None else '-'}", highlight=False)
        out.print(f"principal_id: {job.principal_id}", highlight=False)
        out.print(f"command: {' '.join(job.spec.argv)}", highlight=False)
        resources = f"gpus={job.spec.gpus} cpus={job.spec.cpus} memory_mb={job.spec.memory_mb}"
        out.print(f"resources: {resources}", highlight=False)
        tail = gateway.queries.job_output(job)
        if tail is not None:
            out.print("output (end):", highlight=False)
            out.print(tail or "(none)", highlight=False, markup=False)
    finally:
        gateway.close()


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Give a failed or cancelled job a fresh set of attempts (a serving gateway submits it)."""
    gateway = _open()
    try:
        job = gateway.commands.retry_job(job_id, gateway.settings.cli_actor)
        out.print(f"{job.id}: {job.state} ({job.message})", highlight=False)
    finally:
        gateway.close()


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Stop a job that has not ended."""
    gateway = _open()
    try:
        job = gateway.commands.cancel_job(job_id, gateway.settings.cli_actor)
        out.print(f"{job.id}: {job.state}", highlight=False)
    finally:
        gateway.close()
