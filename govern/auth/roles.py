"""Roles and what each may call. The one table of route permissions; handlers ask it, never
check roles themselves."""

from __future__ import annotations

from enum import StrEnum

from govern.errors import Forbidden

__all__ = ["ROLES", "Action", "ensure_allowed", "is_allowed"]

ROLES: tuple[str, ...] = ("admin", "steward", "auditor", "compliance", "trainer")


class Action(StrEnum):
    DATASETS_READ = "datasets.read"
    DATASETS_WRITE = "datasets.write"
    DECIDE_SELF = "decisions.self"
    DECIDE_ANY = "decisions.any"
    POLICIES_READ = "policies.read"
    POLICIES_WRITE = "policies.write"
    PRINCIPALS_READ = "principals.read"
    PRINCIPALS_WRITE = "principals.write"
    TOKENS_WRITE = "tokens.write"
    # Checkpoints, the verifier key, proofs and the caller's own entries.
    LEDGER_READ = "ledger.read"
    # Every principal's entries, and the whole log at once (the bundle).
    LEDGER_READ_ALL = "ledger.read_all"
    # Any run's provenance, and which runs read a subject's rows; a principal always sees its own.
    RUNS_READ = "runs.read"
    # Register or replace the recipe of any run; a principal always may for its own runs.
    RECIPES_ANY = "recipes.any"
    ERASURE_WRITE = "erasure.write"
    ERASURE_READ = "erasure.read"
    # Retrain/unlearn jobs: reading them, and retrying or cancelling one.
    JOBS_READ = "jobs.read"
    JOBS_WRITE = "jobs.write"
    # Legal rules are public to every caller; assessments and the review queue are not.
    COMPLIANCE_RULES_READ = "compliance.rules.read"
    COMPLIANCE_READ = "compliance.read"
    COMPLIANCE_ASSESS = "compliance.assess"
    REVIEWS_DECIDE = "reviews.decide"
    # The admin audit console: for the people who oversee the gateway, not for trainers.
    CONSOLE = "console"


_EVERYONE = frozenset(ROLES)
_GRANTS: dict[Action, frozenset[str]] = {
    Action.DATASETS_READ: _EVERYONE,
    Action.DATASETS_WRITE: frozenset({"admin", "steward"}),
    Action.DECIDE_SELF: _EVERYONE,
    # Asking about another principal reveals what they may see: reviewers only.
    Action.DECIDE_ANY: frozenset({"admin", "steward", "auditor", "compliance"}),
    Action.POLICIES_READ: frozenset({"admin", "steward", "auditor", "compliance"}),
    Action.POLICIES_WRITE: frozenset({"admin", "steward"}),
    Action.PRINCIPALS_READ: frozenset({"admin", "steward", "auditor"}),
    Action.PRINCIPALS_WRITE: frozenset({"admin"}),
    Action.TOKENS_WRITE: frozenset({"admin"}),
    Action.LEDGER_READ: _EVERYONE,
    Action.LEDGER_READ_ALL: frozenset({"admin", "auditor", "compliance"}),
    Action.RUNS_READ: frozenset({"admin", "steward", "auditor", "compliance"}),
    Action.RECIPES_ANY: frozenset({"admin"}),
    Action.ERASURE_WRITE: frozenset({"admin", "compliance"}),
    Action.ERASURE_READ: frozenset({"admin", "steward", "auditor", "compliance"}),
    Action.JOBS_READ: frozenset({"admin", "steward", "auditor", "compliance"}),
    Action.JOBS_WRITE: frozenset({"admin"}),
    Action.COMPLIANCE_RULES_READ: _EVERYONE,
    Action.COMPLIANCE_READ: frozenset({"admin", "steward", "auditor", "compliance"}),
    Action.COMPLIANCE_ASSESS: frozenset({"admin", "steward", "compliance"}),
    Action.REVIEWS_DECIDE: frozenset({"admin", "compliance"}),
    Action.CONSOLE: frozenset({"admin", "steward", "auditor", "compliance"}),
}


def is_allowed(role: str, action: Action) -> bool:
    return role in _GRANTS.get(action, frozenset())


def ensure_allowed(role: str, action: Action) -> None:
    if not is_allowed(role, action):
        raise Forbidden(
            f"role {role!r} may not {action.value}",
            details={"role": role, "action": action.value},
        )
