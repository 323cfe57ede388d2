"""A policy set built and validated aside, ready to swap in. Building it is where a bad set
fails (and the old one keeps serving)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import Any, Generic, TypeVar

import casbin

from govern.errors import PolicyInvalid
from govern.plan import rowfilter
from govern.policy import compiler
from govern.policy.columns import ColumnDecision, ColumnRules
from govern.policy.store import PolicySetAdapter

__all__ = ["LoadedPolicy"]

_MAX_RULES = 100_000
_MAX_FIELD = 10_000
_CACHE_SIZE = 4096
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def validate_rules(model: Any, rules: Sequence[Sequence[Any]]) -> list[tuple[str, ...]]:
    if len(rules) > _MAX_RULES:
        raise PolicyInvalid(f"at most {_MAX_RULES} rules per set", details={"rules": len(rules)})
    p_tokens = model.model["p"]["p"].tokens
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, list | tuple) or not rule:
            raise PolicyInvalid(f"rule {i} is not a non-empty list", details={"index": i})
        if not all(isinstance(v, str) for v in rule):
            raise PolicyInvalid(f"rule {i}: every field is a string", details={"index": i})
        if any(len(v) > _MAX_FIELD or "\x00" in v for v in rule):
            raise PolicyInvalid(
                f"rule {i}: fields are at most {_MAX_FIELD} characters, without NUL",
                details={"index": i},
            )
        ptype = rule[0]
        if ptype == "p":
            if len(rule) - 1 != len(p_tokens):
                raise PolicyInvalid(
                    f"rule {i}: p rules have {len(p_tokens)} fields ({', '.join(p_tokens)})",
                    details={"index": i, "fields": len(rule) - 1},
                )
        elif ptype != "p2":
            raise PolicyInvalid(
                f"rule {i}: unknown rule type {ptype[:20]!r}; use p (rows) or p2 (columns)",
                details={"index": i},
            )
        out.append(tuple(rule))
    return out


def _subject_key(subject: Mapping[str, Any]) -> tuple[Any, ...]:
    # The type is part of the key: True, 1 and 1.0 are equal in Python but not to Casbin's `in`.
    return tuple(sorted((k, type(v).__name__, v) for k, v in subject.items()))


class _Lru(Generic[K, V]):
    """A small thread-safe LRU map; compute runs outside the lock (compiles can be slow)."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


@dataclass
class LoadedPolicy:
    version: int | None
    model_text: str
    rules: tuple[tuple[str, ...], ...]
    model: Any
    column_rules: ColumnRules

    @classmethod
    def build(
        cls, model_text: str, rules: Sequence[Sequence[Any]], version: int | None
    ) -> LoadedPolicy:
        model = compiler.load_model(model_text)
        checked = validate_rules(model, rules)
        compiler.check_model(model, [list(r) for r in checked if r[0] == "p"])
        return cls(
            version=version,
            model_text=model_text,
            rules=tuple(checked),
            model=model,
            column_rules=ColumnRules(checked),
        )

    def __post_init__(self) -> None:
        # Computed once: decisions read these on every request.
        self.row_rules: list[list[str]] = [list(r) for r in self.rules if r[0] == "p"]
        self.is_empty = not self.row_rules
        self._filters: _Lru[tuple[Any, ...], rowfilter.RowFilter] = _Lru(_CACHE_SIZE)
        self._columns: _Lru[tuple[Any, ...], dict[str, ColumnDecision]] = _Lru(_CACHE_SIZE)
        # Casbin's and simpleeval's evaluation over the shared model is not safe across
        # threads (a concurrent compile can come out wrong), so compiles take turns; the
        # caches above make that rare.
        self._evaluating = Lock()

    def column_actions(
        self,
        subject: Mapping[str, Any],
        dataset: str,
        purpose: str,
        tags: Mapping[str, Sequence[str]],
    ) -> dict[str, ColumnDecision]:
        """Column decisions (cached per subject, dataset, purpose and tags)."""
        key = (
            _subject_key(subject),
            dataset,
            purpose,
            tuple(sorted((c, tuple(t)) for c, t in tags.items())),
        )
        return self._columns.get(key, lambda: self._decide_columns(subject, dataset, purpose, tags))

    def _decide_columns(
        self,
        subject: Mapping[str, Any],
        dataset: str,
        purpose: str,
        tags: Mapping[str, Sequence[str]],
    ) -> dict[str, ColumnDecision]:
        with self._evaluating:
            return self.column_rules.decide(subject, dataset, purpose, tags)

    def enforcer(self) -> casbin.Enforcer:
        """A real Casbin enforcer over this set, loaded through the adapter (for checks)."""
        model = compiler.load_model(self.model_text)
        e = casbin.Enforcer(model, PolicySetAdapter(self.row_rules))
        e.logger.disabled = True
        return e

    def row_filter(
        self,
        subject: Mapping[str, Any],
        act: str,
        purpose: str,
        dataset: str,
        columns: Mapping[str, str],
    ) -> rowfilter.RowFilter:
        """Compile (cached) the row filter; raises PolicyCompileError when not exact."""
        key = (_subject_key(subject), act, purpose, dataset, tuple(sorted(columns.items())))

        def compile_() -> rowfilter.RowFilter:
            with self._evaluating:
                return compiler.compile_row_filter(
                    self.model,
                    self.row_rules,
                    subject=subject,
                    act=act,
                    purpose=purpose,
                    dataset=dataset,
                    columns=columns,
                )

        return self._filters.get(key, compile_)
