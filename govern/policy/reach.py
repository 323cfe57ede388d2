"""Which outcomes a row filter can reach, over-approximated: used to deny a request whose
filter can never select a row, even when it is not literally FALSE (e.g. ``x AND FALSE``,
which in Python's short-circuit order is NULL or FALSE, never TRUE)."""

from __future__ import annotations

from govern.plan.rowfilter import And, Const, Not, Or, RowFilter

__all__ = ["can_be_false", "can_be_true"]


def can_be_true(f: RowFilter) -> bool:
    if isinstance(f, Const):
        return f.value is True
    if isinstance(f, And):
        return all(can_be_true(x) for x in f.operands)
    if isinstance(f, Or):
        return any(can_be_true(x) for x in f.operands)
    if isinstance(f, Not):
        return can_be_false(f.operand)
    return True


def can_be_false(f: RowFilter) -> bool:
    if isinstance(f, Const):
        return f.value is False
    if isinstance(f, And):
        return any(can_be_false(x) for x in f.operands)
    if isinstance(f, Or):
        return all(can_be_false(x) for x in f.operands)
    if isinstance(f, Not):
        return can_be_true(f.operand)
    return True
