"""The job manager: stores jobs, submits them to a backend, follows them to an end.

A job is a row in the ``jobs`` table, keyed by an id derived from (erasure request, run, kind),
so enqueueing the same work twice creates nothing new. The reconciler, one thread in a serving
gateway, does all the talking to backends:

- a ``pending`` or ``retrying`` job whose time has come is submitted. Its attempt id (the
  backend's id for it) is chosen and stored *before* the submit, and every backend treats a
  repeated submit of an id as the same job, so a crash between the submit and the store's update
  cannot start a job twice: after a restart the same id is submitted again and the backend
  answers with the job it already has.
- a ``submitted`` or ``running`` job is polled by its attempt id.
- a backend that cannot be reached, or an attempt that fails, costs one attempt: the job waits
  ``jobs_retry_seconds`` (doubling, at most 10 minutes) and is tried again with ``message``
  saying why, until ``jobs_max_attempts`` attempts have been made; then it is ``failed``.
  A backend that cannot be reached while a job runs only delays polling.

Every submit mints a bearer token for the job's principal (``jobs_token_ttl_seconds``), passed
to the job as ``GOVERN_TOKEN`` with ``GOVERN_FLIGHT_URL``; tokens are never stored with the job.

The manager never changes the store on its own: every change the reconciler decides on goes
through ``JobChanges``, which the command layer implements (each change with its event, in one
transaction), handed to the manager with ``bind``. The methods below ``JobChanges`` that write
are the store steps those commands run inside their transactions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update

from govern.auth import IssuedToken, TokenService
from govern.errors import (
    BadRequest,
    Conflict,
    GovernError,
    JobBackendUnavailable,
    JobNotFound,
    NotFound,
    ValidationError,
)
from govern.jobs.base import ACTIVE_STATES, TERMINAL_STATES, JobBackend, JobSpec
from govern.settings import Settings
from govern.store.db import Database
from govern.store.models import ErasureRequest, Job, Principal, as_utc

__all__ = ["JobChanges", "JobInfo", "JobManager", "Worker", "job_id_for", "open_backend"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 600.0
_MAX_MESSAGE = 2000


def job_id_for(request_id: str | None, spec: JobSpec) -> str:
    """The same request, run and kind always give the same job id (enqueue is idempotent)."""
    key = json.dumps([request_id, spec.run_id, spec.kind])
    return "job-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def open_backend(name: str, settings: Settings) -> JobBackend:
    """The configured backend; its client connects on first use, so this never fails on a
    backend that is down."""
    if name == "local":
        from govern.jobs.local import LocalBackend

        return LocalBackend(settings.jobs_dir)
    if name == "ray":
        from govern.jobs.ray_backend import RayBackend

        return RayBackend(settings.jobs_ray_address)
    if name == "kubernetes":
        from govern.jobs.kubernetes_backend import KubernetesBackend

        return KubernetesBackend(
            namespace=settings.jobs_kubernetes_namespace,
            image=settings.jobs_kubernetes_image,
            kubeconfig=settings.jobs_kubernetes_config,
            ttl_seconds=settings.jobs_kubernetes_ttl_seconds,
        )
    raise JobBackendUnavailable(f"no jobs backend {name!r} (GOVERN_JOBS_BACKEND={name})")


@dataclass(frozen=True)
class JobInfo:
    id: str
    request_id: str | None
    backend: str
    kind: str
    state: str
    run_id: str
    principal_id: str
    attempts: int
    external_id: str | None
    message: str
    spec: JobSpec
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_json(self) -> dict[str, Any]:
        """The REST shape (DESIGN.md's job fields, then the extras)."""
        return {
            "id": self.id,
            "backend": self.backend,
            "kind": self.kind,
            "state": self.state,
            "run_id": self.run_id,
            "attempts": self.attempts,
            "message": self.message,
            "request_id": self.request_id,
            "external_id": self.external_id,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "next_attempt_at": _iso(self.next_attempt_at),
        }


def _iso(t: datetime | None) -> str | None:
    return as_utc(t).isoformat() if t is not None else None


def _now() -> datetime:
    return datetime.now(UTC)


def _info(row: Job) -> JobInfo:
    spec = JobSpec.from_json(row.spec)
    return JobInfo(
        id=row.id,
        request_id=row.erasure_request_id,
        backend=row.backend,
        kind=row.kind,
        state=row.state,
        run_id=row.run_id or spec.run_id,
        principal_id=row.principal_id or spec.principal_id,
        attempts=int(row.attempts or 0),
        external_id=row.external_id,
        message=row.message or "",
        spec=spec,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        started_at=as_utc(row.started_at) if row.started_at else None,
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        next_attempt_at=as_utc(row.next_attempt_at) if row.next_attempt_at else None,
    )


def jobs_by_request(db: Database, request_ids: Sequence[str]) -> dict[str, list[JobInfo]]:
    """Jobs of several erasure requests in one query (for state roll-ups)."""
    out: dict[str, list[JobInfo]] = {r: [] for r in request_ids}
    if not request_ids:
        return out
    with db.session() as s:
        rows = s.scalars(
            select(Job)
            .where(Job.erasure_request_id.in_(list(request_ids)))
            .order_by(Job.created_at, Job.id)
        )
        for row in rows:
            out[str(row.erasure_request_id)].append(_info(row))
    return out


class JobChanges(Protocol):
    """The changes the reconciler makes, each a command with its event."""

    def begin_attempt(
        self, job: JobInfo, external_id: str, backend: str
    ) -> tuple[str, str] | None: ...

    def job_submitted(self, job: JobInfo, attempt: int, external_id: str, backend: str) -> bool: ...

    def update_job(
        self, job: JobInfo, *, revoke_token: bool = False, expect: str | None = None, **values: Any
    ) -> bool: ...

    def end_job(
        self,
        job: JobInfo,
        state: str,
        message: str,
        *,
        attempts: int | None = None,
        expect: str | None = None,
    ) -> bool: ...


class JobManager:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        tokens: TokenService,
        *,
        backends: Mapping[str, JobBackend] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.tokens = tokens
        self.backend_name = settings.jobs_backend
        self._changes: JobChanges | None = None
        # Backends by name, opened on first use. A job keeps the backend it was submitted to,
        # so jobs in flight are still followed after GOVERN_JOBS_BACKEND changes.
        self._backends: dict[str, JobBackend] = dict(backends or {})
        self._backends_lock = threading.Lock()
        self._tick_lock = threading.Lock()
        # Set by a serving gateway to its reconciler's wake(): new jobs start without waiting
        # for the next poll.
        self.wake: Callable[[], None] | None = None

    def bind(self, changes: JobChanges) -> None:
        self._changes = changes

    @property
    def changes(self) -> JobChanges:
        if self._changes is None:
            raise GovernError("the job manager has no command layer bound; it changes nothing")
        return self._changes

    def wake_up(self) -> None:
        if self.wake is not None:
            self.wake()

    # -- queries -------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobInfo:
        with self.db.session() as s:
            row = s.get(Job, job_id)
            if row is None:
                raise JobNotFound(f"no job {job_id[:64]!r}", details={"id": job_id[:64]})
            return _info(row)

    def for_request(self, request_id: str) -> list[JobInfo]:
        return jobs_by_request(self.db, [request_id])[request_id]

    def all(self, limit: int = 1000) -> list[JobInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit))
            return [_info(r) for r in rows]

    def backend(self, name: str | None = None) -> JobBackend:
        name = name or self.backend_name
        with self._backends_lock:
            if name not in self._backends:
                self._backends[name] = open_backend(name, self.settings)
            return self._backends[name]

    def output_tail(self, job: JobInfo) -> str | None:
        """The end of a local job's output; None for other backends (their own tools show
        it)."""
        if job.backend != "local" or not job.external_id:
            return None
        from govern.jobs.local import LocalBackend

        return LocalBackend(self.settings.jobs_dir).tail(job.external_id)

    def token_of(self, job_id: str) -> str | None:
        with self.db.session() as s:
            return s.scalar(select(Job.token_jti).where(Job.id == job_id))

    # -- store steps, run inside the commands' transactions --------------------------------------

    def enqueue(self, request_id: str, specs: Sequence[JobSpec]) -> tuple[list[str], bool]:
        """Record the jobs an erasure request needs (idempotent) and mark the request planned,
        even with no jobs, so that its state can say that none was needed. Returns the ids of
        the jobs created now (the reconciler submits them) and whether the request was marked
        planned just now."""
        by_id: dict[str, JobSpec] = {}
        for spec in specs:
            _check_spec(spec)
            by_id.setdefault(job_id_for(request_id, spec), spec)
        now = _now()
        created: list[str] = []
        with self.db.session() as s:
            request = s.get(ErasureRequest, request_id)
            if request is None:
                raise NotFound(f"no erasure request {request_id[:64]!r}")
            existing = set(s.scalars(select(Job.id).where(Job.id.in_(list(by_id)))))
            for jid, spec in by_id.items():
                if jid in existing:
                    continue
                s.add(
                    Job(
                        id=jid,
                        erasure_request_id=request_id,
                        backend=self.backend_name,
                        kind=spec.kind,
                        state="pending",
                        spec=spec.to_json(),
                        message=_waiting_message(self.backend_name),
                        created_at=now,
                        updated_at=now,
                        run_id=spec.run_id,
                        principal_id=spec.principal_id,
                        attempts=0,
                        next_attempt_at=now,
                    )
                )
                created.append(jid)
            planned = request.state == "excluded"
            if planned:
                request.state = "planned"
        return created, planned

    def reset_for_retry(self, job_id: str, actor: str) -> str:
        """Give a failed or cancelled job a fresh set of attempts; returns its old state."""
        with self.db.session() as s:
            row = s.get(Job, job_id)
            if row is None:
                raise JobNotFound(f"no job {job_id[:64]!r}", details={"id": job_id[:64]})
            if row.state not in ("failed", "cancelled"):
                raise Conflict(
                    f"job {job_id} is {row.state}; only failed or cancelled jobs are retried",
                    details={"state": row.state},
                )
            previous = row.state
            now = _now()
            row.state = "pending"
            row.attempts = 0
            row.external_id = None
            row.next_attempt_at = now
            row.finished_at = None
            row.updated_at = now
            row.message = f"retry requested by {actor} (was {previous})"
            return previous

    def cancel_on_backend(self, job: JobInfo) -> None:
        if job.external_id and job.state in ("submitted", "running"):
            self.backend(job.backend).cancel(job.external_id)

    def claim_attempt(self, job: JobInfo, external_id: str, backend: str) -> str | None:
        """Store the attempt id before the submit (compare-and-set, so replicas agree on one
        id); returns the stored id, or None when the job is no longer waiting."""
        with self.db.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job.id, Job.state == job.state, Job.external_id.is_(None))
                .values(external_id=external_id, backend=backend)
            )
            row = s.get(Job, job.id)
            if row is None or row.state not in ("pending", "retrying"):
                return None
            return str(row.external_id)

    def mint_token(self, principal_id: str) -> IssuedToken:
        """A trainer token for one attempt of a job of ``principal_id``."""
        with self.db.session() as s:
            principal = s.get(Principal, principal_id)
            if principal is None:
                raise ValidationError(f"no principal {principal_id!r}")
            if principal.disabled:
                raise ValidationError(f"principal {principal_id!r} is disabled")
            roles = list(principal.roles)
        # Least privilege: a job reads training data and nothing else, so it acts as a trainer;
        # a principal without that role (an admin, say) gets no token for a job.
        if "trainer" not in roles:
            raise ValidationError(
                f"principal {principal_id!r} does not hold the trainer role jobs read with"
            )
        return self.tokens.issue(principal_id, "trainer", self.settings.jobs_token_ttl_seconds)

    def set_token(self, job_id: str, jti: str) -> None:
        with self.db.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(token_jti=jti))

    def mark_submitted(self, job: JobInfo, attempt: int, external_id: str, backend: str) -> bool:
        now = _now()
        with self.db.session() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.state.in_(["pending", "retrying"]))
                .values(
                    state="submitted",
                    attempts=attempt,
                    updated_at=now,
                    started_at=job.started_at or now,
                    next_attempt_at=None,
                    message=f"attempt {attempt} submitted to {backend} as {external_id}",
                )
            )
        return bool(getattr(done, "rowcount", 1))

    def set(self, job: JobInfo, *, expect: str | None = None, **values: Any) -> bool:
        """Update a job if it is still in the state we read (a replica may have moved it)."""
        if "message" in values:
            values["message"] = str(values["message"])[:_MAX_MESSAGE]
        values["updated_at"] = _now()
        with self.db.session() as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.state == (expect or job.state))
                .values(**values)
            )
        return bool(getattr(result, "rowcount", 1))

    def finish(
        self,
        job: JobInfo,
        state: str,
        message: str,
        *,
        attempts: int | None = None,
        expect: str | None = None,
    ) -> bool:
        return self.set(
            job,
            state=state,
            message=message,
            finished_at=_now(),
            next_attempt_at=None,
            expect=expect,
            **({"attempts": attempts} if attempts is not None else {}),
        )

    # -- the reconciler ------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: poll what runs, then submit what is due. Safe to call from any thread."""
        with self._tick_lock:
            with self.db.session() as s:
                rows = s.scalars(
                    select(Job)
                    .where(Job.state.in_(sorted(ACTIVE_STATES)))
                    .order_by(Job.created_at, Job.id)
                )
                jobs = [_info(r) for r in rows]
            for job in jobs:
                if job.state in ("submitted", "running"):
                    self._guarded(self._poll, job)
            if self.backend_name == "none":
                return
            now = _now()
            due = [
                j
                for j in jobs
                if j.state in ("pending", "retrying")
                and (j.next_attempt_at is None or j.next_attempt_at <= now)
            ]
            slots = self._free_slots()
            waiting = (
                f"waiting for a free slot: {self.settings.jobs_max_running} local job(s) "
                "running (jobs_max_running)"
            )
            for job in due:
                if slots is not None and slots <= 0:
                    if job.message != waiting:
                        self._guarded(functools.partial(self._update, message=waiting), job)
                    continue
                if self._guarded(self._submit, job) and slots is not None:
                    slots -= 1

    def _update(self, job: JobInfo, **values: Any) -> bool:
        return self.changes.update_job(job, **values)

    def _guarded(self, step: Callable[[JobInfo], object], job: JobInfo) -> object:
        try:
            return step(job)
        except GovernError as exc:  # the store itself is down: try again next pass
            log.warning("job %s: %s", job.id, exc.message)
            return None

    def _free_slots(self) -> int | None:
        """How many more local jobs may start now; None: no limit (Ray and Kubernetes queue
        jobs by the resources they ask for)."""
        if self.backend_name != "local":
            return None
        with self.db.session() as s:
            running = s.scalars(
                select(Job.id).where(
                    Job.backend == "local", Job.state.in_(["submitted", "running"])
                )
            ).all()
        return self.settings.jobs_max_running - len(running)

    def _submit(self, job: JobInfo) -> bool:
        """Submit one attempt; True when the backend accepted it."""
        backend_name = self.backend_name
        try:
            claimed = self.changes.begin_attempt(
                job, job.external_id or f"{job.id}-{secrets.token_hex(3)}", backend_name
            )
        except ValidationError as exc:
            # No token can be minted (the principal is gone or disabled): no retry helps.
            self.changes.end_job(job, "failed", f"cannot mint a token for the job: {exc.message}")
            return False
        if claimed is None:
            return False
        external_id, token = claimed
        secret_env = {
            "GOVERN_TOKEN": token,
            "GOVERN_FLIGHT_URL": self.settings.resolved_jobs_flight_url,
            "GOVERN_JOB_ID": job.id,
        }
        attempt = job.attempts + 1
        try:
            self.backend(backend_name).submit(external_id, job.spec, secret_env)
        except GovernError as exc:
            # Unreachable: the submit may still have landed, so the next try uses the same id.
            keep = external_id if isinstance(exc, JobBackendUnavailable) else None
            self._retry_or_fail(job, attempt, exc.message, external_id=keep)
            return False
        return self.changes.job_submitted(job, attempt, external_id, backend_name)

    def _poll(self, job: JobInfo) -> None:
        if job.external_id is None:  # cannot happen through _submit; recover by resubmitting
            self._update(job, state="pending", message="no attempt id recorded; submitting again")
            return
        try:
            status = self.backend(job.backend).status(job.external_id)
        except GovernError as exc:
            message = f"cannot poll {job.backend}: {exc.message}; will poll again"
            if message != job.message:
                self._update(job, message=message)
            return
        if status.state in ("submitted", "running"):
            message = status.message or f"{status.state} on {job.backend} as {job.external_id}"
            if (status.state, message) != (job.state, job.message):
                self._update(job, state=status.state, message=message)
        elif status.state == "succeeded":
            self.changes.end_job(job, "succeeded", status.message or "succeeded")
        elif status.state == "cancelled":
            self.changes.end_job(job, "cancelled", status.message or "cancelled")
        else:
            self._retry_or_fail(job, job.attempts, status.message, external_id=None)

    def _retry_or_fail(
        self, job: JobInfo, attempts: int, reason: str, *, external_id: str | None
    ) -> None:
        """Count a failed attempt: wait and try again (with ``external_id``, or a new one), or
        give up at ``jobs_max_attempts``. Either way the attempt's token is revoked."""
        limit = self.settings.jobs_max_attempts
        if attempts >= limit:
            self.changes.end_job(
                job, "failed", f"gave up after {attempts} attempt(s): {reason}", attempts=attempts
            )
            return
        wait = min(self.settings.jobs_retry_seconds * 2 ** max(0, attempts - 1), _MAX_BACKOFF)
        due = _now() + timedelta(seconds=wait)
        self.changes.update_job(
            job,
            revoke_token=True,
            state="retrying",
            attempts=attempts,
            next_attempt_at=due,
            external_id=external_id,
            message=f"attempt {attempts} of {limit} failed: {reason}; "
            f"next attempt at {due.strftime('%H:%M:%S')} UTC",
        )

    def close(self) -> None:
        with self._backends_lock:
            for backend in self._backends.values():
                backend.close()
            self._backends.clear()


def _waiting_message(backend: str) -> str:
    if backend == "none":
        return "no jobs backend is configured (GOVERN_JOBS_BACKEND=none); the job waits"
    return f"waiting to be submitted to {backend}"


def _check_spec(spec: JobSpec) -> None:
    if spec.kind not in ("retrain", "unlearn"):
        raise BadRequest(f"job kind must be retrain or unlearn, not {spec.kind!r}")
    if not spec.argv or not all(isinstance(a, str) and a for a in spec.argv):
        raise BadRequest("a job needs a command (argv of non-empty strings)")
    if not spec.run_id or not spec.principal_id:
        raise BadRequest("a job needs the run it repairs and the principal it reads as")
    if spec.gpus < 0 or spec.cpus <= 0 or spec.memory_mb <= 0:
        raise BadRequest("a job's gpus must be >= 0, cpus and memory_mb > 0")
    for key in spec.env:
        if key.startswith("GOVERN_TOKEN"):
            raise BadRequest("a job's env must not carry a token; one is minted at submit")


class Worker:
    """A daemon thread that calls ``fn`` now and then every ``interval`` seconds until
    stopped. Errors are logged and the loop goes on: a store or backend that is down now may
    be back at the next pass."""

    def __init__(self, name: str, fn: Callable[[], object], interval: float) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Run the next pass now (e.g. right after new jobs were enqueued)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fn()
            except Exception:
                log.exception("%s: pass failed", self.name)
            self._wake.wait(self.interval)
            self._wake.clear()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
