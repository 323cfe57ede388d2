"""Retrain and unlearn jobs: list and read them; admins retry or cancel one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from govern.api.deps import GatewayDep, require
from govern.auth import Action, Caller
from govern.jobs import JobInfo

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

Reader = Annotated[Caller, Depends(require(Action.JOBS_READ))]
Writer = Annotated[Caller, Depends(require(Action.JOBS_WRITE))]


class JobOut(BaseModel):
    id: str
    backend: str
    kind: str
    state: str
    run_id: str
    attempts: int
    message: str
    request_id: str | None
    external_id: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    next_attempt_at: str | None
    principal_id: str
    argv: list[str]
    resources: dict[str, Any]


def _out(job: JobInfo) -> JobOut:
    spec = job.spec
    return JobOut(
        **job.to_json(),
        principal_id=job.principal_id,
        argv=list(spec.argv),
        resources={"gpus": spec.gpus, "cpus": spec.cpus, "memory_mb": spec.memory_mb},
    )


@router.get("", response_model=list[JobOut])
def list_jobs(
    gateway: GatewayDep,
    _: Reader,
    request: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobOut]:
    jobs = gateway.queries.jobs(request, limit)
    return [_out(j) for j in jobs]


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, gateway: GatewayDep, _: Reader) -> JobOut:
    return _out(gateway.queries.job(job_id))


@router.post("/{job_id}/retry", response_model=JobOut)
def retry_job(job_id: str, gateway: GatewayDep, caller: Writer) -> JobOut:
    """A failed or cancelled job gets a fresh set of attempts (409 otherwise); logged."""
    return _out(gateway.commands.retry_job(job_id, caller.id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, gateway: GatewayDep, caller: Writer) -> JobOut:
    """Stop a job that has not ended (409 once it has); logged."""
    return _out(gateway.commands.cancel_job(job_id, caller.id))
