"""The one place that decides: policy sets in, Plans out.

Reloads are atomic: a new set is built and validated aside (LoadedPolicy.build) and swapped in
by one reference assignment only when that succeeded; a bad set raises and the old one serves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from threading import Lock
from typing import Any

from govern.catalog import DatasetInfo
from govern.errors import GovernError
from govern.plan import Plan, rowfilter
from govern.policy.loaded import LoadedPolicy
from govern.policy.reach import can_be_true
from govern.policy.store import PolicyStore
from govern.resources import policies_dir
from govern.store.db import Database

__all__ = ["PolicyService", "default_model_text"]

log = logging.getLogger("govern.policy")


def default_model_text() -> str:
    return (policies_dir() / "model.conf").read_text()


class PolicyService:
    def __init__(self, db: Database) -> None:
        self.store = PolicyStore(db)
        self._current: LoadedPolicy | None = None
        self._swap_lock = Lock()

    # -- the set in force ---------------------------------------------------------------------

    @property
    def current(self) -> LoadedPolicy:
        current = self._current
        if current is None:
            self.reload()
            current = self._current
        assert current is not None
        return current

    def reload(self) -> bool:
        """Load the newest stored set if it is newer than the one in force. True if swapped."""
        with self._swap_lock:
            latest = self.store.latest_version()
            if self._current is not None and latest == self._current.version:
                return False
            stored = self.store.get(latest) if latest else None
            if stored is None:
                # Deny by default: no stored set is an empty set.
                self._current = LoadedPolicy.build(default_model_text(), [], None)
                return True
            try:
                loaded = LoadedPolicy.build(stored.model, stored.rules, stored.version)
            except GovernError:
                # A stored set was validated before it was saved; if it no longer builds (an
                # upgrade changed the compiler), keep serving what we have and say so.
                log.exception("stored policy set %s does not build; keeping the old one", latest)
                if self._current is None:
                    self._current = LoadedPolicy.build(default_model_text(), [], None)
                return False
            self._current = loaded
            log.info("policy set %s in force", loaded.version)
            return True

    def validate(self, model_text: str | None, rules: Sequence[Sequence[Any]]) -> LoadedPolicy:
        return LoadedPolicy.build(
            model_text if model_text is not None else self.current.model_text, rules, None
        )

    def prepare(self, model_text: str | None, rules: Sequence[Sequence[Any]]) -> LoadedPolicy:
        """Build and validate a whole set aside (the model in force when none is given); an
        invalid set raises and nothing changes."""
        text = model_text if model_text is not None else self.current.model_text
        return LoadedPolicy.build(text, rules, None)

    def save(self, candidate: LoadedPolicy, by: str) -> int:
        """Store a prepared set as the next version (not yet in force)."""
        return self.store.save(candidate.model_text, [list(r) for r in candidate.rules], by)

    def swap_in(self, candidate: LoadedPolicy, version: int) -> None:
        """Put a saved set in force, unless a newer one already is."""
        with self._swap_lock:
            candidate.version = version
            if self._current is None or (self._current.version or 0) < version:
                self._current = candidate

    # -- deciding ------------------------------------------------------------------------------

    def decide(
        self,
        *,
        subject: Mapping[str, Any],
        dataset: DatasetInfo,
        action: str,
        purpose: str,
        columns: Sequence[str] | None,
        policy: LoadedPolicy | None = None,
    ) -> Plan:
        """A Plan for one request; every failure on the way is a deny with its reason."""
        policy = policy or self.current
        sid = str(subject.get("id", ""))

        def deny(reason: str) -> Plan:
            return Plan.deny(
                dataset=dataset.name,
                purpose=purpose,
                subject_id=sid,
                reason=reason,
                policy_version=policy.version,
                version=dataset.version,
            )

        if policy.is_empty:
            return deny("no policy rules are in force; everything is denied by default")
        wanted = list(dict.fromkeys(columns)) if columns else [c.name for c in dataset.columns]
        known = dataset.column_types
        unknown = [c for c in wanted if c not in known]
        if unknown:
            return deny(f"unknown column(s) {', '.join(c[:64] for c in unknown[:5])}")
        try:
            row_filter = policy.row_filter(subject, action, purpose, dataset.name, known)
        except GovernError as exc:
            return deny(f"policy cannot be evaluated exactly: {exc.message}")
        if not can_be_true(row_filter):
            return deny(
                f"no rule of policy version {policy.version} lets role "
                f"{subject.get('role')!r} {action} {dataset.name} for purpose {purpose!r}"
            )
        tags = {c.name: c.tags for c in dataset.columns if c.name in wanted}
        decisions = policy.column_actions(subject, dataset.name, purpose, tags)
        column_actions = {c: decisions[c].action for c in wanted}
        if all(a == "drop" for a in column_actions.values()):
            return deny("every requested column is dropped by column rules")
        reasons = [
            f"policy version {policy.version} allows {action} of {dataset.name} "
            f"for purpose {purpose!r}",
            "all rows"
            if rowfilter.simplify(row_filter) == rowfilter.TRUE
            else "rows limited by a row filter",
        ]
        reasons += [d.reason for d in decisions.values() if d.reason]
        return Plan(
            decision="allow",
            dataset=dataset.name,
            version=dataset.version,
            purpose=purpose,
            subject_id=sid,
            row_filter=row_filter,
            columns=column_actions,
            policy_version=policy.version,
            reasons=tuple(reasons),
        )
