"""The decider: who is calling, and what a request may get. One path from a request to a Plan.

It resolves the subject from the store (attributes never come from the request), asks the
policy part for the Plan, lets an open compliance verdict overrule it, and appends the
decision to the access log before anyone sees it (invariants 1 and 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from govern.auth import Action, Caller, PrincipalService, TokenService, is_allowed
from govern.catalog import Catalog
from govern.compliance import ComplianceService
from govern.errors import Forbidden, GovernError, PrincipalNotFound
from govern.events import DecisionMade
from govern.ledger.service import Ledger
from govern.plan import Plan, rowfilter
from govern.policy.service import PolicyService

__all__ = ["Decider", "DecisionRequest", "decision_event"]


@dataclass(frozen=True)
class DecisionRequest:
    dataset: str
    purpose: str
    action: str = "read"
    subject_id: str | None = None
    role: str | None = None
    columns: Sequence[str] | None = None
    sent_attributes: Mapping[str, Any] | None = None
    # A pinned dataset version; None decides against the newest active one.
    version: int | None = None


def decision_event(plan: Plan) -> DecisionMade:
    """What the ledger records of a Plan: the decision with its filter as an AST as well as
    text."""
    return DecisionMade(
        subject=plan.subject_id,
        dataset=plan.dataset,
        dataset_version=plan.version,
        purpose=plan.purpose,
        decision=plan.decision,
        row_filter=plan.readable_row_filter(),
        row_filter_ast=None if plan.row_filter is None else rowfilter.to_json(plan.row_filter),
        columns=dict(plan.columns),
        obligations=tuple(plan.obligations),
        policy_version=plan.policy_version,
        reasons=tuple(plan.reasons),
    )


class Decider:
    def __init__(
        self,
        *,
        tokens: TokenService,
        principals: PrincipalService,
        catalog: Catalog,
        policy: PolicyService,
        compliance: ComplianceService,
        ledger: Ledger,
    ) -> None:
        self._tokens = tokens
        self._principals = principals
        self._catalog = catalog
        self._policy = policy
        self._compliance = compliance
        self._ledger = ledger

    def authenticate(self, token: str) -> Caller:
        """The caller a bearer token names (AuthError, a 401, for any token that fails)."""
        return self._tokens.verify(token)

    def decide(self, caller: Caller, req: DecisionRequest) -> Plan:
        """Decide and log: the Plan leaves only once its log entry is durable (invariant 2)."""
        return self.decide_many(caller, [req])[0]

    def decide_many(self, caller: Caller, reqs: Sequence[DecisionRequest]) -> list[Plan]:
        plans = [self._decide(caller, r) for r in reqs]
        first = self._ledger.append_many([(decision_event(p), caller.id) for p in plans])
        return [p.with_log_index(first + i) for i, p in enumerate(plans)]

    def _decide(self, caller: Caller, req: DecisionRequest) -> Plan:
        """Resolve the subject from the store, decide, and return the Plan.

        Attributes always come from the subject's stored record: ones sent with the request are
        ignored (and the Plan says so), so no caller can raise a clearance by asserting it.
        """
        subject_id = req.subject_id or caller.id
        if subject_id != caller.id and not is_allowed(caller.role, Action.DECIDE_ANY):
            raise Forbidden(
                f"role {caller.role!r} may only ask decisions about itself",
                details={"subject": subject_id[:200]},
            )

        def deny(reason: str, version: int | None = None) -> Plan:
            return Plan.deny(
                dataset=req.dataset[:200],
                purpose=req.purpose[:100],
                subject_id=subject_id[:200],
                reason=reason,
                policy_version=self._policy.current.version,
                version=version,
            )

        try:
            principal = (
                caller.principal if subject_id == caller.id else self._principals.get(subject_id)
            )
        except PrincipalNotFound:
            return deny("unknown subject")
        if principal.disabled:
            return deny("subject is disabled")
        role = req.role or (caller.role if subject_id == caller.id else principal.roles[0])
        if role not in principal.roles or (subject_id == caller.id and role != caller.role):
            return deny(f"subject does not act as role {role[:32]!r}")
        try:
            info = self._catalog.get(req.dataset, req.version)
        except GovernError as exc:
            return deny(exc.message)
        if info.state in ("pending", "quarantined"):
            # A pinned version that failed its quality suite (or is mid-ingestion) is not served.
            return deny(f"version {info.version} of {info.name!r} is {info.state}", info.version)
        subject = {**principal.attributes, "id": principal.id, "role": role}
        plan = self._policy.decide(
            subject=subject,
            dataset=info,
            action=req.action,
            purpose=req.purpose,
            columns=req.columns,
        )
        if req.sent_attributes and any(
            principal.attributes.get(k) != v for k, v in req.sent_attributes.items()
        ):
            plan = replace(
                plan,
                reasons=(
                    *plan.reasons,
                    "attributes sent with the request were ignored; the stored ones apply",
                ),
            )
        return self._with_compliance(plan)

    def _with_compliance(self, plan: Plan) -> Plan:
        """An open non_compliant verdict for the dataset and purpose denies; an open
        needs_review adds an obligation. Read from a cached table; a failure denies."""
        try:
            verdicts = self._compliance.open_verdicts(plan.dataset, plan.purpose)
        except GovernError as exc:
            return plan.overruled([f"compliance verdicts unavailable: {exc.message}"])
        except SQLAlchemyError:
            # Not only a lost connection (StoreUnavailable): any failure to read them denies.
            return plan.overruled(["compliance verdicts unavailable: the store could not be read"])
        if not verdicts:
            return plan
        bad = [v for v in verdicts if v.verdict == "non_compliant"]
        if bad and plan.allowed:
            return plan.overruled(
                [
                    f"compliance: {v.rule} is non_compliant (assessment {v.assessment_id}): "
                    f"{v.reason}"
                    for v in bad
                ]
            )
        reviews = tuple(
            f"compliance review: {v.rule} ({v.review_id or v.assessment_id})"
            for v in verdicts
            if v.verdict == "needs_review"
        )
        return replace(plan, obligations=(*plan.obligations, *reviews))
