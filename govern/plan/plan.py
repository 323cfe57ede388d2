"""The Plan: the one value that carries a decision from the policy part to everything after it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from govern.plan import rowfilter

__all__ = ["COLUMN_ACTIONS", "MASKS", "Plan", "strictest"]

# Strictest first: when several column rules match, the earliest action in this list wins.
COLUMN_ACTIONS: tuple[str, ...] = (
    "drop",
    "redact",
    "hash",
    "truncate",
    "generalize_date",
    "noise",
    "pass",
)
MASKS: frozenset[str] = frozenset(COLUMN_ACTIONS) - {"drop", "pass"}


def strictest(actions: list[str]) -> str:
    return min(actions, key=COLUMN_ACTIONS.index) if actions else "pass"


@dataclass(frozen=True)
class Plan:
    decision: Literal["allow", "deny"]
    dataset: str
    version: int | None
    purpose: str
    subject_id: str
    row_filter: rowfilter.RowFilter | None
    columns: Mapping[str, str] = field(default_factory=dict)
    obligations: tuple[str, ...] = ()
    policy_version: int | None = None
    reasons: tuple[str, ...] = ()
    log_index: int | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @classmethod
    def deny(
        cls,
        *,
        dataset: str,
        purpose: str,
        subject_id: str,
        reason: str,
        policy_version: int | None = None,
        version: int | None = None,
    ) -> Plan:
        return cls(
            decision="deny",
            dataset=dataset,
            version=version,
            purpose=purpose,
            subject_id=subject_id,
            row_filter=None,
            policy_version=policy_version,
            reasons=(reason,),
        )

    def overruled(self, reasons: Sequence[str]) -> Plan:
        """The same request denied after all (e.g. by a compliance verdict), for ``reasons``:
        no rows and no columns."""
        return replace(self, decision="deny", row_filter=None, columns={}, reasons=tuple(reasons))

    def with_log_index(self, index: int) -> Plan:
        return Plan(**{**self.__dict__, "log_index": index})

    def readable_row_filter(self) -> str | None:
        if self.row_filter is None:
            return None
        return rowfilter.to_readable_sql(self.row_filter)

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md's Plan JSON, plus the dataset version it was decided against."""
        return {
            "decision": self.decision,
            "row_filter": self.readable_row_filter(),
            "columns": dict(self.columns),
            "obligations": list(self.obligations),
            "policy_version": self.policy_version,
            "reasons": list(self.reasons),
            "log_index": self.log_index,
            "dataset": self.dataset,
            "dataset_version": self.version,
        }
