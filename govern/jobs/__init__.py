"""Jobs: retraining and unlearning work started by erasure requests, run on a backend (local
processes, a Ray cluster, Kubernetes) and followed to an end by a reconciler. See docs/jobs.md.
"""

from __future__ import annotations

from govern.jobs.base import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    BackendStatus,
    JobBackend,
    JobKind,
    JobSpec,
    JobState,
)
from govern.jobs.service import (
    JobChanges,
    JobInfo,
    JobManager,
    Worker,
    job_id_for,
    open_backend,
)

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "BackendStatus",
    "JobBackend",
    "JobChanges",
    "JobInfo",
    "JobKind",
    "JobManager",
    "JobSpec",
    "JobState",
    "Worker",
    "job_id_for",
    "open_backend",
]
