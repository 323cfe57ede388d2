"""A small condition language over facts, with three-valued (Kleene) logic.

Rule files write conditions as Python-like expressions::

    legal_basis == 'consent' and consent in ['refused', 'withdrawn']
    not personal_data or gdpr_scope == False

They are parsed with :mod:`ast` into a closed set of node kinds (never evaluated as Python):
``and``, ``or``, ``not``, a bare fact name (a boolean fact), and a comparison of a fact with
a constant or a list of constants by ``==``, ``!=``, ``in``, ``not in``. A fact that is not
known makes its comparison *unknown*; ``and``/``or``/``not`` follow Kleene's logic, so a
condition is decided only where the known facts suffice.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "Condition",
    "ConditionError",
    "FactValue",
    "Outcome",
    "parse_condition",
]

FactValue: TypeAlias = str | bool
Outcome: TypeAlias = bool | None  # None: unknown


class ConditionError(ValueError):
    """A condition that does not parse or names what it may not."""


@dataclass(frozen=True)
class _Fact:
    name: str


@dataclass(frozen=True)
class _Compare:
    fact: str
    op: Literal["==", "!=", "in", "not in"]
    values: tuple[FactValue, ...]


@dataclass(frozen=True)
class _Not:
    operand: _Node


@dataclass(frozen=True)
class _Bool:
    op: Literal["and", "or"]
    operands: tuple[_Node, ...]


_Node: TypeAlias = _Fact | _Compare | _Not | _Bool


@dataclass(frozen=True)
class Condition:
    source: str
    root: _Node

    @property
    def facts(self) -> frozenset[str]:
        """Every fact the condition names."""
        out: set[str] = set()
        _collect(self.root, out)
        return frozenset(out)

    @property
    def comparisons(self) -> list[tuple[str, tuple[FactValue, ...]]]:
        """(fact, constants) pairs, for checking constants against each fact's domain."""
        out: list[tuple[str, tuple[FactValue, ...]]] = []
        _comparisons(self.root, out)
        return out

    def evaluate(self, facts: Mapping[str, FactValue]) -> tuple[Outcome, frozenset[str]]:
        """The outcome over ``facts`` (missing = unknown) and the known facts it rested on."""
        used: set[str] = set()
        return _eval(self.root, facts, used), frozenset(used)


def _collect(node: _Node, out: set[str]) -> None:
    if isinstance(node, _Fact | _Compare):
        out.add(node.name if isinstance(node, _Fact) else node.fact)
    elif isinstance(node, _Not):
        _collect(node.operand, out)
    else:
        for o in node.operands:
            _collect(o, out)


def _comparisons(node: _Node, out: list[tuple[str, tuple[FactValue, ...]]]) -> None:
    if isinstance(node, _Compare):
        out.append((node.fact, node.values))
    elif isinstance(node, _Not):
        _comparisons(node.operand, out)
    elif isinstance(node, _Bool):
        for o in node.operands:
            _comparisons(o, out)


def _eval(node: _Node, facts: Mapping[str, FactValue], used: set[str]) -> Outcome:
    if isinstance(node, _Fact):
        value = facts.get(node.name)
        if value is None:
            return None
        used.add(node.name)
        return value is True
    if isinstance(node, _Compare):
        value = facts.get(node.fact)
        if value is None:
            return None
        used.add(node.fact)
        if node.op in ("==", "in"):
            return value in node.values
        return value not in node.values
    if isinstance(node, _Not):
        inner = _eval(node.operand, facts, used)
        return None if inner is None else not inner
    results = [_eval(o, facts, used) for o in node.operands]
    if node.op == "and":
        if any(r is False for r in results):
            return False
        return True if all(r is True for r in results) else None
    if any(r is True for r in results):
        return True
    return False if all(r is False for r in results) else None


def parse_condition(source: str) -> Condition:
    """Parse ``source``; raises ConditionError naming the unsupported part."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError("a condition must be a non-empty string")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"does not parse: {exc.msg}") from exc
    return Condition(source=source.strip(), root=_build(tree.body))


def _constant(node: ast.expr) -> tuple[FactValue, ...]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bool):
        return (node.value,)
    if isinstance(node, ast.List | ast.Tuple):
        out: list[FactValue] = []
        for elt in node.elts:
            out.extend(_constant(elt))
        if not out:
            raise ConditionError("an empty list of values")
        return tuple(out)
    raise ConditionError(f"expected a string, True/False or a list of them: {ast.unparse(node)}")


def _build(node: ast.expr) -> _Node:
    if isinstance(node, ast.BoolOp):
        op: Literal["and", "or"] = "and" if isinstance(node.op, ast.And) else "or"
        return _Bool(op, tuple(_build(v) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _Not(_build(node.operand))
    if isinstance(node, ast.Name):
        return _Fact(node.id)
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or not isinstance(node.left, ast.Name):
            raise ConditionError(f"compare one fact with constants: {ast.unparse(node)}")
        ops: dict[type[ast.cmpop], Literal["==", "!=", "in", "not in"]] = {
            ast.Eq: "==",
            ast.NotEq: "!=",
            ast.In: "in",
            ast.NotIn: "not in",
        }
        kind = ops.get(type(node.ops[0]))
        if kind is None:
            raise ConditionError(f"unsupported comparison: {ast.unparse(node)}")
        values = _constant(node.comparators[0])
        if kind in ("==", "!=") and len(values) != 1:
            raise ConditionError(f"use 'in' to compare with a list: {ast.unparse(node)}")
        return _Compare(node.left.id, kind, values)
    raise ConditionError(f"unsupported expression: {ast.unparse(node)}")
