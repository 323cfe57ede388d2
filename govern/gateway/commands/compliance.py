"""Compliance: assessments and a person's verdict on a review."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from govern.compliance import AssessmentInfo, ReviewInfo
from govern.events import AssessmentRecorded, ReviewDecided
from govern.gateway.commands.base import CommandBase
from govern.ledger.service import Tx

__all__ = ["ComplianceCommands"]


class ComplianceCommands(CommandBase):
    def assess(
        self,
        dataset: str | None,
        purpose: str,
        rule_ids: Sequence[str] | None,
        facts: Mapping[str, Any],
        actor: str,
    ) -> AssessmentInfo:
        """Run the assessment (outside any transaction: a model may take seconds), then store
        it, with a review per needs_review verdict, and its event. Facts and the description
        stay in the store; the log keeps their names, a keyed digest and the length."""
        compliance = self._p.compliance
        run = compliance.run_assessment(dataset, purpose, rule_ids, facts)
        description = run.description

        def change(tx: Tx) -> AssessmentInfo:
            info = compliance.record(run, actor)
            structured = {k: v for k, v in facts.items() if k != "description"}
            tx.emit(
                AssessmentRecorded(
                    id=info.id,
                    dataset=info.dataset,
                    purpose=info.purpose,
                    fact_names=tuple(sorted(structured)),
                    facts_digest=self._p.commitments.json(structured),
                    description_chars=len(description),
                    verdicts=tuple(
                        {"rule": v.rule, "verdict": v.verdict, "confidence": round(v.confidence, 4)}
                        for v in run.verdicts
                    ),
                    reviews={r.rule: r.id for r in info.reviews},
                )
            )
            tx.after_commit(compliance.invalidate)
            return info

        committed = self._transact(actor, change)
        return AssessmentInfo(**{**committed.value.__dict__, "log_index": committed.first_index})

    def decide_review(self, rid: str, verdict: str, note: str, reviewer: str) -> ReviewInfo:
        """A person's verdict on an open review; in force once its event is durable."""
        compliance = self._p.compliance

        def change(tx: Tx) -> ReviewInfo:
            info = compliance.decide(rid, verdict, note, reviewer)
            tx.emit(
                ReviewDecided(
                    id=info.id,
                    assessment_id=info.assessment_id,
                    rule=info.rule,
                    dataset=info.dataset,
                    purpose=info.purpose,
                    verdict=verdict,
                    note_chars=len(note),
                )
            )
            tx.after_commit(compliance.invalidate)
            return info

        committed = self._transact(reviewer, change)
        return ReviewInfo(**{**committed.value.__dict__, "log_index": committed.first_index})
