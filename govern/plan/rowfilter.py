"""The row-filter AST: a small predicate over one dataset's columns, rendered to DuckDB SQL.

A Plan carries this tree (``to_json``/``from_json``) and the engine runs it as SQL (``to_sql``);
reviewers read ``to_readable_sql``. Both SQL forms come from one walk of the tree.

Semantics are three-valued; NULL stands for "the Casbin evaluation would raise", which denies:

- ``Const(True | False | None)``.
- ``Compare(op, Column, Column | Value)``: DuckDB semantics, NULL when an operand is NULL.
- ``InList(Column, values)``: DuckDB ``IN``, NULL when the column is NULL; values are never NULL.
- ``IsNull(Column)``: two-valued.
- ``IsNaN(Column)``: DuckDB ``isnan``, NULL when the column is NULL.
- ``Not``: three-valued NOT.
- ``And`` / ``Or``: Python's left-to-right short circuit, not SQL's: the first operand that is
  NULL, or that decides (FALSE for And, TRUE for Or), is the result. ``And(NULL, FALSE)`` is NULL.

A row is selected exactly when the filter is TRUE; NULL and FALSE both leave it out, and the
compiler may trade one for the other where that cannot change the selection. So negate a filter
through its SQL, never with ``Not`` on the tree: ``to_sql`` renders an expression that is TRUE
exactly on the selected rows and FALSE (never NULL) elsewhere, so ``NOT (sql)`` is the complement.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast

from govern.errors import PolicyCompileError

__all__ = [
    "FALSE",
    "RAISES",
    "TRUE",
    "And",
    "Column",
    "Compare",
    "CompareOp",
    "Const",
    "InList",
    "IsNaN",
    "IsNull",
    "Not",
    "Or",
    "RowFilter",
    "Scalar",
    "Value",
    "and_",
    "columns",
    "from_json",
    "if_then_else",
    "is_false",
    "is_true",
    "nonnull_if_true",
    "not_",
    "nullable",
    "or_",
    "quote_identifier",
    "simplify",
    "sql_literal",
    "to_json",
    "to_readable_sql",
    "to_sql",
]

Scalar: TypeAlias = str | int | float | bool | dt.date | dt.datetime
CompareOp = Literal["=", "<>", "<", "<=", ">", ">="]
COMPARE_OPS: Final[frozenset[str]] = frozenset({"=", "<>", "<", "<=", ">", ">="})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters that would be invisible or misleading inside a quoted literal (controls, bidi
# overrides, line separators): rendered as chr(n) so a reviewer sees them.
_UNSAFE_CATEGORIES: Final[frozenset[str]] = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})


def quote_identifier(name: str) -> str:
    """Quote a column name for DuckDB; anything but a plain identifier is refused."""
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise PolicyCompileError(
            "column name is not a plain identifier", details={"column": repr(name)[:200]}
        )
    return f'"{name}"'


def _check_scalar(value: object) -> None:
    if isinstance(value, bool | int | str | dt.date):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            raise PolicyCompileError("timezone-aware timestamps are not supported in a row filter")
        return
    if isinstance(value, float):
        return
    raise PolicyCompileError(
        "row-filter value has an unsupported type", details={"type": type(value).__name__}
    )


@dataclass(frozen=True)
class Column:
    name: str

    def __post_init__(self) -> None:
        quote_identifier(self.name)


@dataclass(frozen=True, eq=False)
class Value:
    """A constant operand. Equality is by type as well as value: 1, 1.0 and True differ in SQL."""

    value: Scalar

    def __post_init__(self) -> None:
        _check_scalar(self.value)

    def _key(self) -> tuple[str, str]:
        return _scalar_key(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Value) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class Const:
    value: bool | None


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Column
    right: Column | Value

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or self.op not in COMPARE_OPS:
            raise PolicyCompileError("unknown comparison operator", details={"op": self.op})


@dataclass(frozen=True, eq=False)
class InList:
    column: Column
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise PolicyCompileError("IN list must not be empty")
        for value in self.values:
            _check_scalar(value)

    def _key(self) -> tuple[object, ...]:
        return (self.column, tuple(_scalar_key(v) for v in self.values))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InList) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class IsNull:
    column: Column


@dataclass(frozen=True)
class IsNaN:
    column: Column


@dataclass(frozen=True)
class Not:
    operand: RowFilter


@dataclass(frozen=True)
class And:
    operands: tuple[RowFilter, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[RowFilter, ...]


RowFilter: TypeAlias = Const | Compare | InList | IsNull | IsNaN | Not | And | Or

TRUE: Final = Const(True)
FALSE: Final = Const(False)
RAISES: Final = Const(None)


def _scalar_key(value: Scalar) -> tuple[str, str]:
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dt.datetime):
        return ("timestamp", value.isoformat())
    if isinstance(value, dt.date):
        return ("date", value.isoformat())
    return (type(value).__name__, repr(value))


# --- nullability ---------------------------------------------------------------------------


def _strict_columns(f: RowFilter) -> frozenset[str]:
    """Columns that are NULL-free whenever ``f`` is non-NULL because f is NULL on their NULL."""
    if isinstance(f, Compare):
        names = {f.left.name}
        if isinstance(f.right, Column):
            names.add(f.right.name)
        return frozenset(names)
    if isinstance(f, InList | IsNaN):
        return frozenset({f.column.name})
    if isinstance(f, Not):
        return _strict_columns(f.operand)
    return frozenset()


def nonnull_if_true(f: RowFilter) -> frozenset[str]:
    """Columns that cannot be NULL in a row where ``f`` is TRUE."""
    return _nonnull_if_true(f)


def _nonnull_if_true(f: RowFilter) -> frozenset[str]:
    """Columns known not NULL once ``f`` evaluated to TRUE."""
    if isinstance(f, Not) and isinstance(f.operand, IsNull):
        return frozenset({f.operand.column.name})
    if isinstance(f, And):
        out: frozenset[str] = frozenset()
        for op in f.operands:
            out |= _nonnull_if_true(op)
        return out
    if isinstance(f, Or):
        sets = [_nonnull_if_true(op) for op in f.operands]
        return frozenset.intersection(*sets) if sets else frozenset()
    return _strict_columns(f)


def _nonnull_if_false(f: RowFilter) -> frozenset[str]:
    """Columns known not NULL once ``f`` evaluated to FALSE."""
    if isinstance(f, IsNull):
        return frozenset({f.column.name})
    if isinstance(f, Not):
        return _nonnull_if_true(f.operand)
    if isinstance(f, Or):
        out: frozenset[str] = frozenset()
        for op in f.operands:
            out |= _nonnull_if_false(op)
        return out
    if isinstance(f, And):
        sets = [_nonnull_if_false(op) for op in f.operands]
        return frozenset.intersection(*sets) if sets else frozenset()
    return _strict_columns(f)


def nullable(f: RowFilter, nonnull: frozenset[str] = frozenset()) -> bool:
    """Whether ``f`` may be NULL, given columns known not to be NULL (conservative)."""
    if isinstance(f, Const):
        return f.value is None
    if isinstance(f, IsNull):
        return False
    if isinstance(f, Compare | InList | IsNaN):
        return not _strict_columns(f) <= nonnull
    if isinstance(f, Not):
        return nullable(f.operand, nonnull)
    step = _nonnull_if_true if isinstance(f, And) else _nonnull_if_false
    known = nonnull
    for op in f.operands:
        if nullable(op, known):
            return True
        known = known | step(op)
    return False


# --- smart constructors and simplification -------------------------------------------------


def _key(f: RowFilter) -> str:
    return json.dumps(to_json(f), sort_keys=True)


def _junction(kind: type[And] | type[Or], operands: Iterable[RowFilter]) -> RowFilter:
    # Under short-circuit semantics the neutral element drops out, the absorbing element or
    # NULL ends the evaluation, and a repeated operand can only repeat the value it had.
    neutral, absorbing = (TRUE, FALSE) if kind is And else (FALSE, TRUE)
    out: list[RowFilter] = []
    seen: set[str] = set()
    for op in _flatten(kind, operands):
        if op == neutral:
            continue
        key = _key(op)
        if key in seen:
            continue
        seen.add(key)
        out.append(op)
        if isinstance(op, Const):
            break
    if not out:
        return neutral
    if out[-1] == absorbing and not nullable(kind(tuple(out[:-1]))):
        return absorbing
    if len(out) == 1:
        return out[0]
    return kind(tuple(out))


def _flatten(kind: type[And] | type[Or], operands: Iterable[RowFilter]) -> Iterable[RowFilter]:
    for op in operands:
        if isinstance(op, kind):
            yield from op.operands
        else:
            yield op


def and_(*operands: RowFilter) -> RowFilter:
    """Short-circuit AND of the operands, simplified."""
    return _junction(And, operands)


def or_(*operands: RowFilter) -> RowFilter:
    """Short-circuit OR of the operands, simplified."""
    return _junction(Or, operands)


def not_(operand: RowFilter) -> RowFilter:
    if isinstance(operand, Const):
        return operand if operand.value is None else Const(not operand.value)
    if isinstance(operand, Not):
        return operand.operand
    return Not(operand)


def if_then_else(cond: RowFilter, then: RowFilter, orelse: RowFilter) -> RowFilter:
    """``then`` where ``cond`` is TRUE, ``orelse`` where FALSE, NULL where ``cond`` is NULL."""
    if isinstance(cond, Const):
        return RAISES if cond.value is None else (then if cond.value else orelse)
    if _key(then) == _key(orelse):
        return and_(or_(cond, TRUE), then)
    if then == TRUE and orelse == FALSE:
        return cond
    if then == FALSE and orelse == TRUE:
        return not_(cond)
    if orelse == FALSE:
        return and_(cond, then)
    if then == TRUE:
        return or_(cond, orelse)
    if then == FALSE:
        return and_(not_(cond), orelse)
    if orelse == TRUE:
        return or_(not_(cond), then)
    return or_(and_(cond, then), and_(not_(cond), orelse))


def simplify(f: RowFilter) -> RowFilter:
    """An equivalent filter with constants folded and nested junctions flattened."""
    if isinstance(f, Not):
        return not_(simplify(f.operand))
    if isinstance(f, And):
        return and_(*(simplify(op) for op in f.operands))
    if isinstance(f, Or):
        return or_(*(simplify(op) for op in f.operands))
    if isinstance(f, InList) and len(f.values) == 1:
        return Compare("=", f.column, Value(f.values[0]))
    return f


def is_true(f: RowFilter) -> bool:
    """Whether the filter selects every row without reading any (no filter needed)."""
    return f == TRUE


def is_false(f: RowFilter) -> bool:
    """Whether the filter selects no row whatever the data (a deny)."""
    return isinstance(f, Const) and f.value is not True


def columns(f: RowFilter) -> set[str]:
    """Names of the columns the filter reads."""
    if isinstance(f, Compare):
        names = {f.left.name}
        if isinstance(f.right, Column):
            names.add(f.right.name)
        return names
    if isinstance(f, InList | IsNull | IsNaN):
        return {f.column.name}
    if isinstance(f, Not):
        return columns(f.operand)
    if isinstance(f, And | Or):
        out: set[str] = set()
        for op in f.operands:
            out |= columns(op)
        return out
    return set()


# --- SQL -----------------------------------------------------------------------------------

_Sink = Callable[[Scalar], str]


def _render(f: RowFilter, sink: _Sink, nonnull: frozenset[str], positive: bool) -> str:
    """SQL for ``f``. ``positive``: only "is it TRUE" matters, so And may use plain SQL AND."""
    if isinstance(f, Const):
        return {True: "TRUE", False: "FALSE", None: "CAST(NULL AS BOOLEAN)"}[f.value]
    if isinstance(f, Compare):
        right = (
            quote_identifier(f.right.name) if isinstance(f.right, Column) else sink(f.right.value)
        )
        return f"({quote_identifier(f.left.name)} {f.op} {right})"
    if isinstance(f, InList):
        items = ", ".join(sink(v) for v in f.values)
        return f"({quote_identifier(f.column.name)} IN ({items}))"
    if isinstance(f, IsNull):
        return f"({quote_identifier(f.column.name)} IS NULL)"
    if isinstance(f, IsNaN):
        return f"isnan({quote_identifier(f.column.name)})"
    if isinstance(f, Not):
        return f"(NOT {_render(f.operand, sink, nonnull, False)})"
    if isinstance(f, Or) and positive and len(f.operands) == 2 and f.operands[1] == TRUE:
        # TRUE exactly where the first operand is not NULL.
        return f"({_render(f.operands[0], sink, nonnull, False)} IS NOT NULL)"
    if isinstance(f, And) and positive:
        # TRUE iff every operand is TRUE, in either semantics.
        parts, known = [], nonnull
        for op in f.operands:
            parts.append(_render(op, sink, known, True))
            known = known | _nonnull_if_true(op)
        return "(" + " AND ".join(parts) + ")"
    return _render_junction(f, sink, nonnull, positive)


def _render_junction(f: And | Or, sink: _Sink, nonnull: frozenset[str], positive: bool) -> str:
    is_and = isinstance(f, And)
    step = _nonnull_if_true if is_and else _nonnull_if_false
    contexts, known = [], nonnull
    for op in f.operands:
        contexts.append(known)
        known = known | step(op)
    last = len(f.operands) - 1
    heads = list(zip(f.operands[:last], contexts[:last], strict=True))
    if not any(nullable(op, ctx) for op, ctx in heads):
        # NULL-free left operands make SQL's AND/OR agree with the short circuit.
        word = " AND " if is_and else " OR "
        parts = [_render(op, sink, ctx, False) for op, ctx in heads]
        parts.append(_render(f.operands[last], sink, contexts[last], positive))
        return "(" + word.join(parts) + ")"
    # One flat CASE (no nesting, however many operands): the first operand that decides the
    # junction or is NULL is its value. Operands are rendered in order, so placeholders and
    # parameters stay aligned even where an operand is written twice.
    branches = []
    for op, ctx in heads:
        if nullable(op, ctx):
            test = "IS NOT TRUE" if is_and else "IS NOT FALSE"
            text = _render(op, sink, ctx, False)
            branches.append(f"WHEN {text} {test} THEN {_render(op, sink, ctx, False)}")
        else:
            text = _render(op, sink, ctx, False)
            branches.append(f"WHEN NOT {text} THEN FALSE" if is_and else f"WHEN {text} THEN TRUE")
    tail = _render(f.operands[last], sink, contexts[last], positive)
    return "(CASE " + " ".join(branches) + f" ELSE {tail} END)"


def _render_top(f: RowFilter, sink: _Sink) -> str:
    try:
        sql = _render(f, sink, frozenset(), True)
        return f"({sql} IS TRUE)" if nullable(f) else sql
    except RecursionError as exc:
        raise PolicyCompileError("row filter is too deeply nested to render") from exc


def to_sql(f: RowFilter) -> tuple[str, list[object]]:
    """Parameterised DuckDB SQL (``?`` placeholders) and its parameters, in order."""
    params: list[object] = []

    def bind(value: Scalar) -> str:
        _check_scalar(value)
        if isinstance(value, str):
            _check_text(value)
        params.append(value)
        return "?"

    return _render_top(f, bind), params


def to_readable_sql(f: RowFilter) -> str:
    """The same SQL with every value written as a safely quoted literal."""
    return _render_top(f, sql_literal)


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PolicyCompileError("string value is not valid Unicode text") from exc


def _quote_text(value: str) -> str:
    _check_text(value)
    pieces: list[str] = []
    run: list[str] = []
    for ch in value:
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            if run:
                pieces.append("'" + "".join(run).replace("'", "''") + "'")
                run = []
            pieces.append(f"chr({ord(ch)})")
        else:
            run.append(ch)
    if run or not pieces:
        pieces.append("'" + "".join(run).replace("'", "''") + "'")
    return pieces[0] if len(pieces) == 1 else "(" + " || ".join(pieces) + ")"


def sql_literal(value: Scalar) -> str:
    """A DuckDB literal for ``value`` of the same type a bound parameter would have."""
    _check_scalar(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value) if value >= 0 else f"({value})"
    if isinstance(value, float):
        # A bare 0.1 is a DECIMAL in DuckDB; the string cast is exact and covers nan/inf.
        text = "NaN" if math.isnan(value) else repr(value)
        return f"CAST('{text}' AS DOUBLE)"
    if isinstance(value, str):
        return _quote_text(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    return f"DATE '{value.isoformat()}'"


# --- JSON ----------------------------------------------------------------------------------


def _value_to_json(value: Scalar) -> dict[str, Any]:
    kind, _ = _scalar_key(value)
    if isinstance(value, float):
        return {"type": "float", "value": repr(value)}
    if isinstance(value, dt.date):
        return {"type": kind, "value": value.isoformat()}
    return {"type": kind, "value": value}


def _value_from_json(data: Any) -> Scalar:
    if not isinstance(data, Mapping):
        raise PolicyCompileError("row-filter value must be an object")
    kind, raw = data.get("type"), data.get("value")
    parsers: dict[str, Callable[[Any], Scalar]] = {
        "str": _expect(str),
        "int": _expect(int),
        "bool": _expect(bool),
        "float": lambda v: float(_expect(str)(v)),
        "date": lambda v: dt.date.fromisoformat(_expect(str)(v)),
        "timestamp": lambda v: dt.datetime.fromisoformat(_expect(str)(v)),
    }
    if kind not in parsers:
        raise PolicyCompileError("unknown row-filter value type", details={"type": repr(kind)})
    try:
        value = parsers[kind](raw)
    except ValueError as exc:
        raise PolicyCompileError("bad row-filter value", details={"type": kind}) from exc
    _check_scalar(value)
    return value


def _expect(kind: type[Any]) -> Callable[[Any], Any]:
    def check(raw: Any) -> Any:
        # bool is an int in Python; keep the two apart.
        if not isinstance(raw, kind) or (kind is int and isinstance(raw, bool)):
            raise PolicyCompileError("row-filter value does not match its type")
        return raw

    return check


def to_json(f: RowFilter) -> dict[str, Any]:
    """A JSON-ready dict; ``from_json`` restores an equal tree."""
    if isinstance(f, Const):
        return {"op": "const", "value": f.value}
    if isinstance(f, Compare):
        right: dict[str, Any] = (
            {"column": f.right.name}
            if isinstance(f.right, Column)
            else {"value": _value_to_json(f.right.value)}
        )
        return {"op": "compare", "cmp": f.op, "column": f.left.name, "right": right}
    if isinstance(f, InList):
        return {
            "op": "in",
            "column": f.column.name,
            "values": [_value_to_json(v) for v in f.values],
        }
    if isinstance(f, IsNull):
        return {"op": "is_null", "column": f.column.name}
    if isinstance(f, IsNaN):
        return {"op": "is_nan", "column": f.column.name}
    if isinstance(f, Not):
        return {"op": "not", "operand": to_json(f.operand)}
    kind = "and" if isinstance(f, And) else "or"
    return {"op": kind, "operands": [to_json(op) for op in f.operands]}


def from_json(data: Mapping[str, Any] | str) -> RowFilter:
    """Rebuild a filter from ``to_json`` output (a dict or its JSON text), validating it."""
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, Mapping):
        raise PolicyCompileError("row filter must be a JSON object")
    op = data.get("op")
    if op == "const":
        value = data.get("value")
        if value is not None and not isinstance(value, bool):
            raise PolicyCompileError("const must be true, false or null")
        return Const(value)
    if op == "compare":
        right_data = data.get("right")
        if not isinstance(right_data, Mapping):
            raise PolicyCompileError("compare needs a right operand")
        right: Column | Value = (
            Column(_name(right_data.get("column")))
            if "column" in right_data
            else Value(_value_from_json(right_data.get("value")))
        )
        return Compare(cast(CompareOp, data.get("cmp")), Column(_name(data.get("column"))), right)
    if op == "in":
        raw_values = data.get("values")
        if not isinstance(raw_values, list):
            raise PolicyCompileError("in needs a list of values")
        values = tuple(_value_from_json(v) for v in raw_values)
        return InList(Column(_name(data.get("column"))), values)
    if op in ("is_null", "is_nan"):
        column = Column(_name(data.get("column")))
        return IsNull(column) if op == "is_null" else IsNaN(column)
    if op == "not":
        return Not(from_json(_node(data.get("operand"))))
    if op in ("and", "or"):
        raw_ops = data.get("operands")
        if not isinstance(raw_ops, list):
            raise PolicyCompileError(f"{op} needs a list of operands")
        operands = tuple(from_json(_node(o)) for o in raw_ops)
        return And(operands) if op == "and" else Or(operands)
    raise PolicyCompileError("unknown row-filter node", details={"op": repr(op)[:100]})


def _name(raw: Any) -> str:
    if not isinstance(raw, str):
        raise PolicyCompileError("column name must be a string")
    return raw


def _node(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise PolicyCompileError("row-filter node must be an object")
    return raw
