"""Assessments and reviews in the store, and the table of open verdicts that decisions consult.

An assessment stores every verdict; each ``needs_review`` verdict opens a review. The verdict in
force for (dataset, purpose, rule) is the one of the newest assessment that judged that rule,
replaced by its review's decision once a person decided it. Decisions read that table from an
in-process cache that is rebuilt when this process writes an assessment or a review, and
otherwise at most every ``compliance_refresh_seconds`` when the store's counts moved (so other
replicas' writes are seen without a store round trip on every decision).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from govern.catalog import Catalog
from govern.catalog.profile import VersionProfiler
from govern.compliance.holder import ModelHolder
from govern.compliance.pipeline import AssessmentInput, Assessor, Verdict
from govern.compliance.rules import Rule, RuleLibrary
from govern.errors import BadRequest, Conflict, NotFound
from govern.store.db import Database
from govern.store.models import Assessment, Review, as_utc, utcnow

__all__ = [
    "AssessmentInfo",
    "AssessmentRun",
    "ComplianceService",
    "OpenVerdict",
    "ReviewInfo",
    "normalise_purpose",
]

DECIDABLE = ("compliant", "non_compliant")


def normalise_purpose(purpose: str) -> str:
    return " ".join(purpose.strip().lower().split())


@dataclass(frozen=True)
class AssessmentInfo:
    id: str
    dataset: str | None
    purpose: str
    verdicts: list[dict[str, Any]]
    requested_by: str
    created_at: datetime
    reviews: list[ReviewInfo] = field(default_factory=list)
    log_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        by_rule = {r.rule: r for r in self.reviews}
        verdicts = []
        for v in self.verdicts:
            review = by_rule.get(v["rule"])
            verdicts.append(
                {
                    **v,
                    "review": None
                    if review is None
                    else {"id": review.id, "state": review.state, "verdict": review.verdict},
                }
            )
        return {
            "id": self.id,
            "dataset": self.dataset,
            "purpose": self.purpose,
            "verdicts": verdicts,
            "requested_by": self.requested_by,
            "created_at": self.created_at.isoformat(),
            "log_index": self.log_index,
        }


@dataclass(frozen=True)
class ReviewInfo:
    id: str
    assessment_id: str
    rule: str
    state: str
    verdict: str | None
    note: str
    reviewer: str | None
    created_at: datetime
    decided_at: datetime | None
    dataset: str | None = None
    purpose: str | None = None
    rationale: str = ""
    log_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "assessment_id": self.assessment_id,
            "rule": self.rule,
            "state": self.state,
            "verdict": self.verdict,
            "note": self.note,
            "reviewer": self.reviewer,
            "dataset": self.dataset,
            "purpose": self.purpose,
            "rationale": self.rationale,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "log_index": self.log_index,
        }


@dataclass(frozen=True)
class AssessmentRun:
    """An assessment's verdicts, made and not yet stored."""

    dataset: str | None
    purpose: str
    facts: Mapping[str, Any]
    description: str
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class OpenVerdict:
    rule: str
    verdict: str  # non_compliant | needs_review
    assessment_id: str
    reason: str
    review_id: str | None = None


def _assessment_info(a: Assessment, reviews: Sequence[Review]) -> AssessmentInfo:
    return AssessmentInfo(
        id=a.id,
        dataset=a.dataset,
        purpose=a.purpose,
        verdicts=list(a.verdicts),
        requested_by=a.requested_by,
        created_at=as_utc(a.created_at),
        reviews=[_review_info(r, a) for r in reviews],
    )


def _review_info(r: Review, a: Assessment | None = None) -> ReviewInfo:
    rationale = ""
    if a is not None:
        rationale = next(
            (v.get("rationale", "") for v in a.verdicts if v.get("rule") == r.rule), ""
        )
    return ReviewInfo(
        id=r.id,
        assessment_id=r.assessment_id,
        rule=r.rule,
        state=r.state,
        verdict=r.verdict,
        note=r.note,
        reviewer=r.reviewer,
        created_at=as_utc(r.created_at),
        decided_at=as_utc(r.decided_at) if r.decided_at is not None else None,
        dataset=a.dataset if a else None,
        purpose=a.purpose if a else None,
        rationale=rationale,
    )


class ComplianceService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        library: RuleLibrary,
        assessor: Assessor,
        refresh_seconds: float = 2.0,
        models: ModelHolder | None = None,
        profiler: VersionProfiler | None = None,
    ) -> None:
        self.db = db
        self.profiler = profiler or VersionProfiler()
        self.catalog = catalog
        self.library = library
        self.assessor = assessor
        self.models = models
        self._refresh = refresh_seconds
        self._table_lock = threading.Lock()
        self._table: dict[tuple[str, str], tuple[OpenVerdict, ...]] | None = None
        self._signature: tuple[int, int] | None = None
        self._checked_at = 0.0

    def start(self, *, load_model: bool) -> None:
        """Called at start-up (the library is already loaded and validated by now); a serving
        gateway begins loading the model in the background."""
        if load_model and self.models is not None:
            self.models.start()

    def rules(self) -> list[Rule]:
        return list(self.library)

    # -- assessments -------------------------------------------------------------------------

    def run_assessment(
        self,
        dataset: str | None,
        purpose: str,
        rule_ids: Sequence[str] | None,
        facts: Mapping[str, Any],
    ) -> AssessmentRun:
        """Run the pipeline (a model may take seconds); stores nothing."""
        purpose = purpose.strip()
        if not purpose:
            raise BadRequest("purpose must not be empty")
        description = facts.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise BadRequest("facts.description must be a string")
        self.library.select(rule_ids)  # unknown rule ids: a 422 before any work
        info = self.catalog.get(dataset) if dataset is not None else None
        inp = AssessmentInput(
            purpose=purpose,
            facts={k: v for k, v in facts.items() if k != "description"},
            description=description,
            dataset=dataset,
            columns=info.columns if info else None,
            subject_column=info.subject_column if info else None,
            # Facts from the data itself: counts, and where its people are.
            profile=self.profiler.profile(info) if info else None,
        )
        verdicts = self.assessor.assess(inp, rule_ids)
        return AssessmentRun(dataset, purpose, dict(facts), description, tuple(verdicts))

    def record(self, run: AssessmentRun, actor: str) -> AssessmentInfo:
        """Store an assessment with a review per needs_review verdict (inside the command's
        transaction)."""
        aid = "as_" + secrets.token_hex(8)
        vjson = [v.to_json() for v in run.verdicts]
        reviews = {
            v.rule: "rv_" + secrets.token_hex(8)
            for v in run.verdicts
            if v.verdict == "needs_review"
        }
        now = utcnow()
        with self.db.session() as s:
            row = Assessment(
                id=aid,
                dataset=run.dataset,
                purpose=run.purpose[:100],
                facts=dict(run.facts),
                verdicts=vjson,
                requested_by=actor[:200],
                created_at=now,
            )
            s.add(row)
            s.flush()
            review_rows = [
                Review(id=rid, assessment_id=aid, rule=rule, state="open", created_at=now)
                for rule, rid in reviews.items()
            ]
            s.add_all(review_rows)
            s.flush()
            review_infos = [_review_info(r, row) for r in review_rows]
        return AssessmentInfo(
            id=aid,
            dataset=run.dataset,
            purpose=run.purpose,
            verdicts=vjson,
            requested_by=actor,
            created_at=now,
            reviews=review_infos,
        )

    def get(self, aid: str) -> AssessmentInfo:
        with self.db.session() as s:
            a = s.get(Assessment, aid[:64])
            if a is None:
                raise NotFound(f"no assessment {aid[:64]!r}", details={"id": aid[:64]})
            reviews = s.scalars(select(Review).where(Review.assessment_id == a.id)).all()
            return _assessment_info(a, reviews)

    def assessments(self, limit: int = 200) -> list[AssessmentInfo]:
        """The newest assessments first, each with its reviews."""
        with self.db.session() as s:
            rows = s.scalars(
                select(Assessment)
                .order_by(Assessment.created_at.desc(), Assessment.id)
                .limit(limit)
            ).all()
            ids = [a.id for a in rows]
            reviews: dict[str, list[Review]] = {}
            for r in s.scalars(select(Review).where(Review.assessment_id.in_(ids))):
                reviews.setdefault(r.assessment_id, []).append(r)
            return [_assessment_info(a, reviews.get(a.id, [])) for a in rows]

    # -- reviews -----------------------------------------------------------------------------

    def reviews(self, state: str | None = "open", limit: int = 500) -> list[ReviewInfo]:
        with self.db.session() as s:
            q = select(Review, Assessment).join(Assessment, Assessment.id == Review.assessment_id)
            if state is not None:
                q = q.where(Review.state == state)
            q = q.order_by(Review.created_at, Review.id).limit(limit)
            return [_review_info(r, a) for r, a in s.execute(q).all()]

    def decide(self, rid: str, verdict: str, note: str, reviewer: str) -> ReviewInfo:
        """A person's verdict on an open review (inside the command's transaction)."""
        if verdict not in DECIDABLE:
            raise BadRequest(
                f"a review decides {' or '.join(DECIDABLE)}",
                details={"verdict": verdict[:40], "allowed": list(DECIDABLE)},
            )
        with self.db.session() as s:
            r = s.get(Review, rid[:64])
            if r is None:
                raise NotFound(f"no review {rid[:64]!r}", details={"id": rid[:64]})
            if r.state != "open":
                raise Conflict(
                    f"review {r.id} was already decided ({r.verdict})",
                    details={"id": r.id, "verdict": r.verdict, "reviewer": r.reviewer},
                )
            a = s.get(Assessment, r.assessment_id)
            r.state, r.verdict, r.note = "decided", verdict, note
            r.reviewer, r.decided_at = reviewer[:200], utcnow()
            s.flush()
            return _review_info(r, a)

    # -- the verdicts decisions consult ------------------------------------------------------

    def invalidate(self) -> None:
        with self._table_lock:
            self._table = None

    def open_verdicts(self, dataset: str, purpose: str) -> tuple[OpenVerdict, ...]:
        """The non_compliant and needs_review verdicts in force for this dataset and purpose."""
        table = self._current()
        return table.get((dataset, normalise_purpose(purpose)), ())

    def _signature_now(self) -> tuple[int, int]:
        with self.db.session() as s:
            n_a = s.scalar(select(func.count()).select_from(Assessment)) or 0
            n_r = s.scalar(select(func.count()).where(Review.state != "open")) or 0
        return int(n_a), int(n_r)

    def _current(self) -> dict[tuple[str, str], tuple[OpenVerdict, ...]]:
        now = time.monotonic()
        with self._table_lock:
            table = self._table
            if table is not None and now - self._checked_at < self._refresh:
                return table
        signature = self._signature_now()
        with self._table_lock:
            if self._table is not None and signature == self._signature:
                self._checked_at = now
                return self._table
        table = self._build()
        with self._table_lock:
            self._table, self._signature, self._checked_at = table, signature, now
        return table

    def _build(self) -> dict[tuple[str, str], tuple[OpenVerdict, ...]]:
        latest: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        with self.db.session() as s:
            rows = s.execute(
                select(Assessment.id, Assessment.dataset, Assessment.purpose, Assessment.verdicts)
                .where(Assessment.dataset.is_not(None))
                .order_by(Assessment.created_at, Assessment.id)
            ).all()
            for aid, dataset, purpose, verdicts in rows:
                for v in verdicts or []:
                    latest[(dataset, normalise_purpose(purpose), v["rule"])] = (aid, v)
            decided = {
                (r.assessment_id, r.rule): r
                for r in s.scalars(select(Review))  # open ones too: their ids go in obligations
            }
        table: dict[tuple[str, str], list[OpenVerdict]] = {}
        for (dataset, purpose, rule), (aid, v) in latest.items():
            verdict = v["verdict"]
            review = decided.get((aid, rule))
            # The reason goes into Plans and so into the decision log: it names who and what,
            # never the rationale or the reviewer's note, which may quote personal data.
            reason = f"assessed {verdict}"
            if review is not None and review.state == "decided" and review.verdict:
                verdict = review.verdict
                reason = f"reviewed by {review.reviewer} ({review.id})"[:300]
            if verdict in ("non_compliant", "needs_review"):
                table.setdefault((dataset, purpose), []).append(
                    OpenVerdict(rule, verdict, aid, reason, review.id if review else None)
                )
        return {k: tuple(v) for k, v in table.items()}
