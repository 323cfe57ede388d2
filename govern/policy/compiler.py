"""Compile a Casbin ABAC model, its rules and one known request into an exact SQL row filter.

The filter selects exactly the rows for which ``casbin.Enforcer.enforce(sub, row, act, purpose)``
returns True (an exception from enforce counts as not allowed), for pycasbin 1.43. The method is
partial evaluation of what enforce itself runs:

- policies in Casbin's own order (its adapter load path and ``sort_policies_by_priority``);
- per policy, the matcher text built by Casbin's own helpers (``eval()`` expansion,
  ``escape_assertion``, the ``&&``/``||``/``!`` rewrite) and parsed by Casbin's own SimpleEval;
- every sub-expression that does not read a row column is evaluated by that SimpleEval with the
  real subject, action, purpose and dataset, so Casbin's functions and Python's semantics apply
  unchanged; only ``r.obj.<column>`` stays symbolic;
- the rest becomes a three-valued row filter in which NULL means "enforce would raise here",
  combined per effect in evaluation order, with the early ``break`` once the effect is decided.

What cannot be expressed exactly raises PolicyCompileError, which callers turn into a deny.
"""

from __future__ import annotations

import ast
import copy
import datetime as dt
import json
import math
import operator
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import casbin
import simpleeval
from casbin import util as casbin_util
from casbin.constant import constants as casbin_constants
from casbin.core_enforcer import CoreEnforcer
from casbin.model import FunctionMap, Model
from casbin.persist.adapter import Adapter

from govern.errors import PolicyCompileError, PolicyInvalid
from govern.plan import rowfilter as rf
from govern.plan.rowfilter import FALSE, RAISES, TRUE, RowFilter
from govern.policy import sandbox

__all__ = [
    "DEFAULT_MODEL",
    "REQUEST_TOKENS",
    "build_enforcer",
    "casbin_request",
    "check_model",
    "compile_row_filter",
    "load_model",
]

REQUEST_TOKENS: Final = ("r_sub", "r_obj", "r_act", "r_purpose")

DEFAULT_MODEL: Final = """\
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = sub_rule, dataset, act, purpose, obj_rule, eft
p2 = sub_rule, dataset, tag, purpose, action

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = eval(p.sub_rule) && keyMatch(r.obj.dataset, p.dataset) && r.act == p.act \
&& (p.purpose == "*" || r.purpose == p.purpose) && eval(p.obj_rule)
"""

Effect = Literal["allow-override", "deny-override", "allow-and-deny", "priority"]
_EFFECTS: Final[dict[str, Effect]] = {
    casbin_constants.ALLOW_OVERRIDE_EFFECT: "allow-override",
    casbin_constants.DENY_OVERRIDE_EFFECT: "deny-override",
    casbin_constants.ALLOW_AND_DENY_EFFECT: "allow-and-deny",
    casbin_constants.PRIORITY_EFFECT: "priority",
}

# The Python type a DuckDB column of each type arrives as.
Kind = Literal["str", "int", "float", "bool", "date", "timestamp"]
_KINDS: Final[dict[str, Kind]] = {
    "VARCHAR": "str",
    "TEXT": "str",
    "STRING": "str",
    "BIGINT": "int",
    "INT8": "int",
    "LONG": "int",
    "INTEGER": "int",
    "INT": "int",
    "INT4": "int",
    "SMALLINT": "int",
    "INT2": "int",
    "TINYINT": "int",
    "INT1": "int",
    "DOUBLE": "float",
    "FLOAT8": "float",
    "BOOLEAN": "bool",
    "BOOL": "bool",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "DATETIME": "timestamp",
}
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# simpleeval refuses these attribute names before it looks at the object.
_DISALLOWED_PREFIXES: Final = tuple(simpleeval.DISALLOW_PREFIXES)
_DISALLOWED_ATTRS: Final = frozenset(simpleeval.DISALLOW_METHODS)


# --- requests and enforcers ----------------------------------------------------------------


def casbin_request(
    subject: Mapping[str, Any], dataset: str, row: Mapping[str, Any]
) -> tuple[Any, Any]:
    """The ``(sub, obj)`` pair to pass to ``enforce(sub, obj, act, purpose)``.

    Both are SimpleNamespace objects: simpleeval tries ``getattr`` before indexing, so with a
    dict a column called ``items`` or ``keys`` would resolve to the dict's method.
    """
    if "dataset" in row:
        raise PolicyCompileError("a column named 'dataset' collides with r.obj.dataset")
    return types.SimpleNamespace(**subject), types.SimpleNamespace(dataset=dataset, **row)


class _RulesAdapter(Adapter):  # type: ignore[misc]
    """Loads rules as given, like Casbin's file adapter would after parsing a line."""

    def __init__(self, rules: Sequence[Sequence[str]]) -> None:
        self._rules = [list(r) for r in rules]

    def load_policy(self, model: Any) -> None:
        for rule in self._rules:
            _append_rule(model, rule)


def _append_rule(model: Any, rule: Sequence[str]) -> None:
    # Same lookup as casbin.persist.load_policy_line: unknown rule types are skipped.
    if not rule:
        return
    ptype = rule[0]
    sec = ptype[:1]
    # Model defines keys() but no __contains__, so a bare "in" would not work.
    if sec in model.keys() and ptype in model[sec]:  # noqa: SIM118
        model[sec][ptype].policy.append(list(rule[1:]))


def build_enforcer(model_text: str, rules: Sequence[Sequence[str]]) -> casbin.Enforcer:
    """A real enforcer with ``rules`` loaded through Casbin's adapter path (so sorted)."""
    model = casbin.Enforcer.new_model(text=model_text)
    enforcer = casbin.Enforcer(model, _RulesAdapter(rules))
    enforcer.logger.disabled = True
    return enforcer


# --- model validation ----------------------------------------------------------------------


def load_model(text: str) -> Model:
    """Parse a model and check it has the request shape and an effect govern can compile."""
    try:
        model = casbin.Enforcer.new_model(text=text)
    except Exception as exc:
        raise PolicyInvalid(f"model does not parse: {exc}") from exc
    _validate_model(model)
    return model


def _section(model: Model, sec: str, key: str) -> Any:
    if sec not in model.keys() or key not in model[sec]:  # noqa: SIM118
        names = {"r": "request_definition", "p": "policy_definition"}
        names |= {"e": "policy_effect", "m": "matchers"}
        raise PolicyInvalid(f"model has no {key} in [{names.get(sec, sec)}]")
    return model[sec][key]


def _validate_model(model: Model) -> None:
    tokens = tuple(_section(model, "r", "r").tokens)
    if tokens != REQUEST_TOKENS:
        raise PolicyInvalid(
            "request definition must be exactly 'r = sub, obj, act, purpose'",
            details={"found": [t.removeprefix("r_") for t in tokens]},
        )
    _section(model, "p", "p")
    _section(model, "m", "m")
    _effect(model)
    if "g" in model.keys() and model["g"]:  # noqa: SIM118
        raise PolicyCompileError(
            "role definitions ([role_definition] g) are not supported by the row-filter "
            "compiler; express roles as conditions on r.sub.role"
        )


def _effect(model: Model) -> Effect:
    value = _section(model, "e", "e").value
    if value in _EFFECTS:
        return _EFFECTS[value]
    shown = value.replace("p_", "p.")
    if value == casbin_constants.SUBJECT_PRIORITY_EFFECT:
        raise PolicyCompileError(
            f"policy effect '{shown}' is not supported: subject priority needs role links",
            details={"effect": shown},
        )
    raise PolicyCompileError(
        f"policy effect '{shown}' is not supported; use one of: "
        + "; ".join(k.replace("p_", "p.") for k in _EFFECTS),
        details={"effect": shown},
    )


def _ordered_policies(model: Model, p_rules: Sequence[Sequence[str]]) -> list[list[str]]:
    """The p policies in the order Enforcer.enforce iterates them."""
    work = copy.deepcopy(model)
    work.clear_policy()
    for values in p_rules:
        _append_rule(work, ["p", *values])
    try:
        work.sort_policies_by_priority()
    except Exception as exc:
        raise PolicyInvalid(
            f"rules cannot be ordered by priority ({exc}); priorities must all be "
            "non-negative integers or all be other strings"
        ) from exc
    policy: list[list[str]] = work["p"]["p"].policy
    return policy


def check_model(model: Model, rules: Sequence[Sequence[str]]) -> None:
    """Refuse (422) a model and rule set the compiler cannot translate exactly.

    Independent of any subject: it refuses row-column uses that no subject could make
    compilable (functions, arithmetic or methods over a column, substring tests, ...), results
    that are constants other than bool or float, rules that do not parse or name unknown
    variables, and badly sized or unsortable rules. What depends on the subject or on column
    types (say an int column compared with a double column) is refused by compile_row_filter.
    """
    _validate_model(model)
    tokens = model["p"]["p"].tokens
    p_rules: list[list[str]] = []
    for index, rule in enumerate(rules):
        if not rule or not all(isinstance(v, str) for v in rule):
            raise PolicyInvalid(f"rule {index} is not a list of strings", details={"index": index})
        if rule[0] != "p":
            continue
        if len(rule) - 1 != len(tokens):
            raise PolicyInvalid(
                f"rule {index} has {len(rule) - 1} fields; p has {len(tokens)}",
                details={"index": index, "rule": list(rule)},
            )
        p_rules.append(list(rule[1:]))
    _ordered_policies(model, p_rules)
    matcher = model["m"]["m"].value
    for values in p_rules:
        text = _matcher_text(matcher, tokens, values)
        _static_check(text, set(tokens) | set(REQUEST_TOKENS), f"rule {values}")
    if not p_rules and not casbin_util.has_eval(matcher):
        _static_check(matcher, set(tokens) | set(REQUEST_TOKENS), "the matcher")


def _matcher_text(matcher: str, tokens: Sequence[str], values: Sequence[str]) -> str:
    """The expression enforce evaluates for one policy (Casbin's own eval() expansion)."""
    if not casbin_util.has_eval(matcher):
        return matcher
    params = dict(zip(tokens, values, strict=False))
    names = casbin_util.get_eval_value(matcher)
    missing = [n for n in names if n not in params]
    if missing:
        raise PolicyInvalid(f"eval() of {missing[0]!r}, which is not a policy field")
    rules = [casbin_util.escape_assertion(params[n]) for n in names]
    text: str = casbin_util.replace_eval(matcher, rules)
    return text


def _parse(text: str) -> Any:
    """Casbin's SimpleEval for ``text``: the same rewrite and parse enforce does."""
    functions = FunctionMap.load_function_map().get_functions()
    return CoreEnforcer._get_expression(text, functions)


def _static_check(text: str, known_names: set[str], where: str) -> None:
    try:
        evaluator = _parse(text)
    except Exception as exc:
        raise PolicyInvalid(f"{where}: matcher does not parse ({exc})") from exc
    tree = evaluator.ast_parsed_value
    if tree is None:
        raise PolicyInvalid(f"{where}: matcher is empty")
    sandbox.check_reach(evaluator, where)
    # Comprehension variables are bound by the expression itself.
    bound = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    allowed = known_names | set(evaluator.functions) | bound
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in allowed:
            raise PolicyInvalid(
                f"{where}: name {node.id!r} is not defined (booleans are True and False)"
            )
    _static_row_check(tree, where)
    _static_result_check(tree, where)


def _static_result_check(node: ast.AST, where: str) -> None:
    """Refuse constants that would be the matcher's result but are neither bool nor float:
    enforce raises RuntimeError on them, so the rule can only deny by crashing."""
    if isinstance(node, ast.IfExp):
        _static_result_check(node.body, where)
        _static_result_check(node.orelse, where)
        return
    if isinstance(node, ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        for index, operand in enumerate(node.values):
            last = index == len(node.values) - 1
            # and returns its first falsy operand (or the last), or its first truthy one.
            if not last and isinstance(operand, ast.Constant) and bool(operand.value) == is_and:
                continue
            _static_result_check(operand, where)
        return
    if isinstance(node, ast.Constant | ast.List | ast.Tuple | ast.Dict | ast.Set | ast.JoinedStr):
        constant = node.value if isinstance(node, ast.Constant) else None
        if not isinstance(constant, bool | float):
            raise PolicyCompileError(
                f"{where}: the matcher can evaluate to '{_unparse(node)}', which is not a "
                "boolean (Casbin raises on it); write True or False",
                details={"expression": _unparse(node)},
            )


def _static_column_ref(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "r_obj"
        and node.attr != "dataset"
        and not _disallowed_attr(node.attr)
    )


def _static_dependent(node: ast.AST) -> bool:
    if _static_column_ref(node):
        return True
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return False
    if isinstance(node, ast.Name):
        return node.id == "r_obj"
    return any(_static_dependent(child) for child in ast.iter_child_nodes(node))


def _static_row_check(node: ast.AST, where: str) -> None:
    """Refuse row-dependent constructs the compiler never translates, whatever the subject."""
    if not _static_dependent(node) or _static_column_ref(node):
        return
    ok = isinstance(node, ast.BoolOp | ast.IfExp) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    )
    if isinstance(node, ast.Compare):
        _static_compare_check(node, where)
        ok = True
    if not ok:
        raise PolicyCompileError(
            f"{where}: cannot compile {_describe(node)} over a row column exactly: "
            f"'{_unparse(node)}'",
            details={"expression": _unparse(node)},
        )
    for child in ast.iter_child_nodes(node):
        _static_row_check(child, where)


def _static_compare_check(node: ast.Compare, where: str) -> None:
    operands = [node.left, *node.comparators]
    for index, op in enumerate(node.ops):
        left, right = operands[index], operands[index + 1]
        if not (_static_dependent(left) or _static_dependent(right)):
            continue
        if isinstance(op, ast.In | ast.NotIn) and _static_dependent(right):
            raise PolicyCompileError(
                f"{where}: 'in' with a row column on the right (a substring or container test "
                f"on the column) cannot be compiled exactly: '{_unparse(node)}'"
            )
        if isinstance(op, ast.Is | ast.IsNot):
            other = right if _static_dependent(left) else left
            # By identity: 1 in (None, True, False) is True.
            singleton = isinstance(other, ast.Constant) and any(
                other.value is c for c in (None, True, False)
            )
            if not singleton:
                raise PolicyCompileError(
                    f"{where}: 'is' on a row column is only compiled against None, True or "
                    f"False: '{_unparse(node)}'"
                )


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        return "arithmetic"
    if isinstance(node, ast.Attribute):
        return "an attribute or method of a value"
    if isinstance(node, ast.Name):
        return "the whole r.obj"
    if isinstance(node, ast.Subscript):
        return "indexing"
    return f"a {type(node).__name__} expression"


def _unparse(node: ast.AST) -> str:
    return ast.unparse(node)[:300]


def _disallowed_attr(attr: str) -> bool:
    return attr.startswith(_DISALLOWED_PREFIXES) or attr in _DISALLOWED_ATTRS


# --- symbolic values -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    """A value that does not depend on the row."""

    value: Any


@dataclass(frozen=True)
class _Raise:
    """Evaluation raises, whatever the row."""

    reason: str


@dataclass(frozen=True)
class _Col:
    """The row's value of one column (None for NULL)."""

    name: str
    kind: Kind


@dataclass(frozen=True)
class _Pred:
    """A bool for each row: True/False where the filter is, raising where it is NULL."""

    filter: RowFilter


@dataclass(frozen=True)
class _Cond:
    """``then`` where ``test`` is TRUE, ``orelse`` where FALSE, raising where NULL."""

    test: RowFilter
    then: _Sym
    orelse: _Sym


_Sym = _Known | _Raise | _Col | _Pred | _Cond


def _as_filter(sym: _Sym) -> RowFilter | None:
    """The filter of a value that is always a bool or raises; None for other values."""
    if isinstance(sym, _Pred):
        return sym.filter
    if isinstance(sym, _Raise):
        return RAISES
    if isinstance(sym, _Known) and isinstance(sym.value, bool):
        return rf.Const(sym.value)
    return None


def _cond(test: RowFilter, then: _Sym, orelse: _Sym) -> _Sym:
    if isinstance(test, rf.Const):
        if test.value is None:
            return _Raise("condition raises")
        return then if test.value else orelse
    then_f, else_f = _as_filter(then), _as_filter(orelse)
    if then_f is not None and else_f is not None:
        return _Pred(rf.if_then_else(test, then_f, else_f))
    return _Cond(test, then, orelse)


def _truthy(sym: _Sym) -> RowFilter:
    """Python's ``bool(value)`` per row (what ``and``/``or``/``not`` test)."""
    if isinstance(sym, _Known):
        try:
            return rf.Const(bool(sym.value))
        except Exception:
            return RAISES
    if isinstance(sym, _Raise):
        return RAISES
    if isinstance(sym, _Pred):
        return sym.filter
    if isinstance(sym, _Cond):
        return rf.if_then_else(sym.test, _truthy(sym.then), _truthy(sym.orelse))
    column = rf.Column(sym.name)
    present = rf.not_(rf.IsNull(column))
    zero: dict[Kind, rf.Scalar] = {"bool": False, "str": "", "int": 0, "float": 0.0}
    if sym.kind in zero:
        # NaN is truthy and -0.0 falsy in Python; DuckDB's <> agrees on both.
        return rf.and_(present, rf.Compare("<>", column, rf.Value(zero[sym.kind])))
    return present


def _matched(sym: _Sym) -> RowFilter:
    """How enforce reads a matcher result: bool as is, float != 0, anything else raises."""
    if isinstance(sym, _Known):
        value = sym.value
        if isinstance(value, bool):
            return rf.Const(value)
        if isinstance(value, float):
            return rf.Const(value != 0)
        return RAISES
    if isinstance(sym, _Raise):
        return RAISES
    if isinstance(sym, _Pred):
        return sym.filter
    if isinstance(sym, _Cond):
        return rf.if_then_else(sym.test, _matched(sym.then), _matched(sym.orelse))
    column = rf.Column(sym.name)
    if sym.kind == "bool":
        return rf.Compare("=", column, rf.Value(True))
    if sym.kind == "float":
        return rf.Compare("<>", column, rf.Value(0.0))
    # Exact would be RAISES (enforce raises RuntimeError), but a matcher that hands back a
    # column's value is a policy bug worth a clear refusal rather than silently denied rows.
    raise PolicyCompileError(
        f"the matcher can return the value of {sym.kind} column {sym.name!r}, which is not a "
        "boolean (Casbin raises on it); compare the column instead"
    )


# --- comparisons of a column ------------------------------------------------------------------

_SQL_OPS: Final[dict[type[ast.cmpop], rf.CompareOp]] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_MIRROR: Final[dict[rf.CompareOp, rf.CompareOp]] = {
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
    "=": "=",
    "<>": "<>",
}
# Types a row value may meet in a comparison whose Python semantics are pinned down below.
_PLAIN_TYPES: Final = (
    str,
    int,
    float,
    type(None),
    dt.date,
    tuple,
    list,
    dict,
    set,
    frozenset,
    types.SimpleNamespace,
)


def _py(fn: Callable[[], Any]) -> bool | None:
    """Run one Python comparison: its bool result, or None if it raises."""
    try:
        result = fn()
    except Exception:
        return None
    if not isinstance(result, bool):
        raise PolicyCompileError("a comparison returned a non-boolean value")
    return result


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _compare(op: rf.CompareOp, column: rf.Column, value: rf.Scalar) -> RowFilter:
    return rf.Compare(op, column, rf.Value(value))


def _eq_nonnull(col: _Col, k: Any) -> RowFilter:
    """Python ``value == k`` for a non-NULL value of the column."""
    column = rf.Column(col.name)
    if col.kind == "str":
        # A string DuckDB cannot hold is equal to no row value.
        return _compare("=", column, k) if isinstance(k, str) and _utf8(k) else FALSE
    if col.kind == "int":
        return _int_eq(column, k)
    if col.kind == "float":
        return _float_eq(column, k)
    if col.kind == "date":
        exact = isinstance(k, dt.date) and not isinstance(k, dt.datetime)
        return _compare("=", column, k) if exact else FALSE
    if isinstance(k, dt.datetime) and k.tzinfo is None:
        return _compare("=", column, k)
    return FALSE


def _int_eq(column: rf.Column, k: Any) -> RowFilter:
    if isinstance(k, float):
        if not math.isfinite(k) or not k.is_integer():
            return FALSE
        k = int(k)
    if isinstance(k, int):
        n = int(k)
        return _compare("=", column, n) if _INT64_MIN <= n <= _INT64_MAX else FALSE
    return FALSE


def _float_eq(column: rf.Column, k: Any) -> RowFilter:
    if isinstance(k, float):
        return FALSE if math.isnan(k) else _compare("=", column, k)
    if isinstance(k, int):
        try:
            near = float(k)
        except OverflowError:
            return FALSE
        # Python compares int and float exactly; DuckDB would round the int to a double.
        return _compare("=", column, near) if near == k else FALSE
    return FALSE


def _order_nonnull(col: _Col, op: rf.CompareOp, k: Any) -> RowFilter:
    """Python ``value <op> k`` for a non-NULL value; RAISES where Python raises TypeError."""
    column = rf.Column(col.name)
    if col.kind == "str":
        if not isinstance(k, str):
            return RAISES
        if not _utf8(k):
            raise PolicyCompileError("ordering against a string that is not valid Unicode text")
        return _compare(op, column, k)
    if col.kind == "int":
        return _int_order(column, op, k) if _is_number(k) else RAISES
    if col.kind == "float":
        return _float_order(column, op, k) if _is_number(k) else RAISES
    if col.kind == "date":
        exact = isinstance(k, dt.date) and not isinstance(k, dt.datetime)
        return _compare(op, column, k) if exact else RAISES
    if isinstance(k, dt.datetime) and k.tzinfo is None:
        return _compare(op, column, k)
    return RAISES


def _int_order(column: rf.Column, op: rf.CompareOp, k: int | float) -> RowFilter:
    if isinstance(k, float):
        if math.isnan(k):
            return FALSE
        if math.isinf(k):
            below = op in ("<", "<=")
            return rf.Const(below if k > 0 else not below)
        # For integer x: x < k iff x < ceil(k), x <= k iff x <= floor(k), and so on.
        n = math.ceil(k) if op in ("<", ">=") else math.floor(k)
    else:
        n = int(k)
    if n > _INT64_MAX:
        return rf.Const(op in ("<", "<="))
    if n < _INT64_MIN:
        return rf.Const(op in (">", ">="))
    return _compare(op, column, n)


_DOUBLE_BELOW: Final[dict[rf.CompareOp, rf.CompareOp]] = {
    "<": "<=",
    "<=": "<=",
    ">": ">",
    ">=": ">",
}
_DOUBLE_ABOVE: Final[dict[rf.CompareOp, rf.CompareOp]] = {
    "<": "<",
    "<=": "<",
    ">": ">=",
    ">=": ">=",
}


def _float_order(column: rf.Column, op: rf.CompareOp, k: int | float) -> RowFilter:
    if isinstance(k, float):
        if math.isnan(k):
            return FALSE
        near = k
    else:
        try:
            near = float(k)
        except OverflowError as exc:
            raise PolicyCompileError("integer too large to compare with a DOUBLE column") from exc
        # k has no double: compare with its nearest double, moving the bound to k's side.
        if near < k:  # an exact int/float comparison in Python
            op = _DOUBLE_BELOW[op]
        elif near > k:
            op = _DOUBLE_ABOVE[op]
    test = _compare(op, column, near)
    if op in (">", ">="):
        # DuckDB orders NaN above every number; in Python every NaN comparison is False.
        return rf.and_(test, rf.not_(rf.IsNaN(column)))
    return test


def _member_nonnull(col: _Col, container: Any) -> RowFilter:
    """Python ``value in container`` for a non-NULL value of the column."""
    column = rf.Column(col.name)
    if isinstance(container, str):
        if col.kind == "str":
            raise PolicyCompileError("substring tests on a row column are not supported")
        return RAISES
    if isinstance(container, bytes | bytearray | memoryview | range):
        raise PolicyCompileError(f"'in' over a {type(container).__name__} is not supported")
    if not isinstance(container, list | tuple | set | frozenset | dict):
        if isinstance(container, _PLAIN_TYPES) or callable(container):
            return RAISES  # not iterable: Python raises TypeError
        raise PolicyCompileError(f"'in' over a {type(container).__name__} is not supported")
    elements = list(container)
    if any(isinstance(e, float) and math.isnan(e) for e in elements):
        # Membership tests identity before equality, and NaN identity is not portable.
        raise PolicyCompileError("'in' over a collection holding NaN is not supported")
    # value in [a, b] is value == a or value == b: keep the elements that can be equal.
    values: list[rf.Scalar] = []
    seen: set[rf.Value] = set()
    for element in elements:
        part = _eq_nonnull(col, element)
        right = part.right if isinstance(part, rf.Compare) else None
        if isinstance(right, rf.Value) and right not in seen:
            seen.add(right)
            values.append(right.value)
    if not values:
        return FALSE
    if len(values) == 1:
        return _compare("=", column, values[0])
    return rf.InList(column, tuple(values))


def _guard_null(column: rf.Column, if_null: bool | None, nonnull: RowFilter) -> RowFilter:
    """``if_null`` where the column is NULL, ``nonnull`` elsewhere."""
    is_null = rf.IsNull(column)
    if if_null is True:
        return rf.or_(is_null, nonnull)
    if if_null is False:
        return rf.and_(rf.not_(is_null), nonnull)
    if column.name in _null_strict(nonnull):
        return nonnull
    return rf.if_then_else(is_null, RAISES, nonnull)


def _null_strict(f: RowFilter) -> set[str]:
    """Columns on whose NULL ``f`` is certainly NULL."""
    if isinstance(f, rf.Compare | rf.InList | rf.IsNaN):
        return rf.columns(f)
    if isinstance(f, rf.Not):
        return _null_strict(f.operand)
    if isinstance(f, rf.And | rf.Or):
        return _null_strict(f.operands[0])
    return set()


# --- the partial evaluator ---------------------------------------------------------------------


class _PartialEvaluator:
    """Evaluates one parsed matcher with everything but the row known."""

    def __init__(self, evaluator: Any, names: dict[str, Any], kinds: Mapping[str, Kind | None]):
        self._ev = evaluator
        self._ev.names = names
        self._kinds = kinds
        self._dependent_cache: dict[int, bool] = {}

    def _is_column(self, node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and _static_column_ref(node)
            and node.attr in self._kinds
        )

    def _dependent(self, node: ast.AST) -> bool:
        key = id(node)
        if key not in self._dependent_cache:
            if self._is_column(node):
                result = True
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                result = False  # r_obj.dataset, a missing or forbidden attribute: row-free
            elif isinstance(node, ast.Name):
                result = node.id == "r_obj"
            else:
                result = any(self._dependent(c) for c in ast.iter_child_nodes(node))
            self._dependent_cache[key] = result
        return self._dependent_cache[key]

    def _fold(self, node: ast.AST) -> _Sym:
        try:
            return _Known(self._ev._eval(node))
        except Exception as exc:
            return _Raise(f"{type(exc).__name__}: {exc}")

    def peval(self, node: ast.AST) -> _Sym:
        if not self._dependent(node):
            return self._fold(node)
        if self._is_column(node):
            assert isinstance(node, ast.Attribute)
            return self._column(node.attr)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node.values, 0, isinstance(node.op, ast.And))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self._not(self.peval(node.operand))
        if isinstance(node, ast.Compare):
            return self._compare_chain(node)
        if isinstance(node, ast.IfExp):
            return self._ifexp(node)
        raise PolicyCompileError(
            f"cannot compile {_describe(node)} over a row column exactly: '{_unparse(node)}'",
            details={"expression": _unparse(node)},
        )

    def _column(self, name: str) -> _Col:
        kind = self._kinds[name]
        if kind is None:
            raise PolicyCompileError(
                f"column {name!r} has a type the row-filter compiler does not support"
            )
        rf.quote_identifier(name)
        return _Col(name, kind)

    def _boolop(self, values: list[ast.expr], index: int, is_and: bool) -> _Sym:
        value = self.peval(values[index])
        if index == len(values) - 1 or isinstance(value, _Raise):
            return value
        truth = _truthy(value)
        if isinstance(truth, rf.Const):
            if truth.value is None:
                return _Raise("truth value raises")
            # and: a falsy operand is the result; or: a truthy one is.
            return self._boolop(values, index + 1, is_and) if truth.value == is_and else value
        rest = self._boolop(values, index + 1, is_and)
        if isinstance(value, _Pred):
            # A bool operand that ends the chain is False (and) or True (or) there.
            value_known: _Sym = _Known(not is_and)
        else:
            value_known = value
        return _cond(truth, rest, value_known) if is_and else _cond(truth, value_known, rest)

    def _not(self, value: _Sym) -> _Sym:
        if isinstance(value, _Known):
            try:
                return _Known(operator.not_(value.value))
            except Exception as exc:
                return _Raise(str(exc))
        return _Pred(rf.not_(_truthy(value)))

    def _ifexp(self, node: ast.IfExp) -> _Sym:
        test = self.peval(node.test)
        truth = _truthy(test)
        if isinstance(truth, rf.Const):
            if truth.value is None:
                return _Raise("condition raises")
            return self.peval(node.body if truth.value else node.orelse)
        return _cond(truth, self.peval(node.body), self.peval(node.orelse))

    def _compare_chain(self, node: ast.Compare) -> _Sym:
        left = self.peval(node.left)
        if isinstance(left, _Raise):
            return left
        return self._chain(left, node.ops, node.comparators, 0)

    def _chain(self, left: _Sym, ops: list[ast.cmpop], comps: list[ast.expr], index: int) -> _Sym:
        right = self.peval(comps[index])
        result = self._cmp(ops[index], left, right)
        if index == len(ops) - 1 or isinstance(result, _Raise):
            return result
        truth = _truthy(result)
        if isinstance(truth, rf.Const):
            if truth.value is None:
                return _Raise("comparison raises")
            return self._chain(right, ops, comps, index + 1) if truth.value else result
        return _cond(truth, self._chain(right, ops, comps, index + 1), result)

    def _cmp(self, op: ast.cmpop, left: _Sym, right: _Sym) -> _Sym:
        if isinstance(left, _Raise):
            return left
        if isinstance(right, _Raise):
            return right
        if isinstance(left, _Pred):
            left = _Cond(left.filter, _Known(True), _Known(False))
        if isinstance(right, _Pred):
            right = _Cond(right.filter, _Known(True), _Known(False))
        if isinstance(left, _Cond):
            return _cond(
                left.test, self._cmp(op, left.then, right), self._cmp(op, left.orelse, right)
            )
        if isinstance(right, _Cond):
            return _cond(
                right.test, self._cmp(op, left, right.then), self._cmp(op, left, right.orelse)
            )
        fn = self._ev.operators[type(op)]
        if isinstance(left, _Known) and isinstance(right, _Known):
            try:
                return _Known(fn(left.value, right.value))
            except Exception as exc:
                return _Raise(str(exc))
        if isinstance(left, _Col) and isinstance(right, _Col):
            return _Pred(_col_col(op, left, right))
        if isinstance(left, _Col):
            assert isinstance(right, _Known)
            return _Pred(_col_const(op, fn, left, right.value, column_left=True))
        assert isinstance(left, _Known)
        assert isinstance(right, _Col)
        return _Pred(_col_const(op, fn, right, left.value, column_left=False))


def _col_const(
    op: ast.cmpop, fn: Callable[[Any, Any], Any], col: _Col, k: Any, *, column_left: bool
) -> RowFilter:
    """``column <op> k`` (or ``k <op> column``) with Python's semantics, per row."""
    if not isinstance(k, _PLAIN_TYPES) and not callable(k):
        raise PolicyCompileError(f"cannot compile a comparison with a {type(k).__name__} value")

    def run(value: Any) -> bool | None:
        return _py(lambda: fn(value, k) if column_left else fn(k, value))

    column = rf.Column(col.name)
    if_null = run(None)
    if col.kind == "bool":
        # Two possible values: ask Python for each (bools from DuckDB are the singletons).
        on_true = rf.Const(run(True))
        on_false = rf.Const(run(False))
        is_true = rf.Compare("=", column, rf.Value(True))
        return _guard_null(column, if_null, rf.if_then_else(is_true, on_true, on_false))
    return _guard_null(column, if_null, _col_const_nonnull(op, col, k, column_left))


def _col_const_nonnull(op: ast.cmpop, col: _Col, k: Any, column_left: bool) -> RowFilter:
    if isinstance(op, ast.Eq | ast.NotEq):
        eq = _eq_nonnull(col, k)
        return eq if isinstance(op, ast.Eq) else rf.not_(eq)
    if type(op) in _SQL_OPS:
        sql_op = _SQL_OPS[type(op)]
        return _order_nonnull(col, sql_op if column_left else _MIRROR[sql_op], k)
    if isinstance(op, ast.In | ast.NotIn):
        if column_left:
            member = _member_nonnull(col, k)
        elif col.kind == "str" and isinstance(k, str):
            raise PolicyCompileError("substring tests on a row column are not supported")
        else:
            member = RAISES  # a non-string value is not a container; Python raises TypeError
        return member if isinstance(op, ast.In) else rf.not_(member)
    if isinstance(op, ast.Is | ast.IsNot) and (k is None or isinstance(k, bool)):
        # A non-NULL non-bool row value is never None, True or False.
        return rf.Const(isinstance(op, ast.IsNot))
    raise PolicyCompileError(f"cannot compile '{type(op).__name__}' on a row column exactly")


_SAME_CLASS: Final[set[frozenset[Kind]]] = {
    frozenset({"str"}),
    frozenset({"int"}),
    frozenset({"float"}),
    frozenset({"bool"}),
    frozenset({"date"}),
    frozenset({"timestamp"}),
}
_NUMERIC: Final[frozenset[Kind]] = frozenset({"int", "float", "bool"})


def _col_col(op: ast.cmpop, a: _Col, b: _Col) -> RowFilter:
    """``a <op> b`` for two columns with Python's semantics, per row."""
    kinds = frozenset({a.kind, b.kind})
    same = kinds in _SAME_CLASS
    if not same and kinds <= _NUMERIC:
        raise PolicyCompileError(
            f"comparing {a.kind} column {a.name!r} with {b.kind} column {b.name!r} "
            "cannot be compiled exactly"
        )
    ca, cb = rf.Column(a.name), rf.Column(b.name)
    if isinstance(op, ast.Eq | ast.NotEq):
        both_null = rf.and_(rf.IsNull(ca), rf.IsNull(cb))
        if same:
            equal: RowFilter = rf.Compare("=", ca, cb)
            if a.kind == "float":
                equal = rf.and_(equal, rf.not_(rf.IsNaN(ca)))
            present = rf.and_(rf.not_(rf.IsNull(ca)), rf.not_(rf.IsNull(cb)), equal)
            eq = rf.or_(both_null, present)
        else:
            eq = both_null  # values of different types are never equal; None == None
        return eq if isinstance(op, ast.Eq) else rf.not_(eq)
    if type(op) in _SQL_OPS:
        if not same:
            return RAISES
        test: RowFilter = rf.Compare(_SQL_OPS[type(op)], ca, cb)
        if a.kind == "float":
            test = rf.and_(test, rf.not_(rf.IsNaN(ca)), rf.not_(rf.IsNaN(cb)))
        return test
    if isinstance(op, ast.In | ast.NotIn):
        if a.kind == "str" and b.kind == "str":
            raise PolicyCompileError("substring tests between row columns are not supported")
        return RAISES
    raise PolicyCompileError(f"cannot compile '{type(op).__name__}' between row columns")


# --- per-policy outcome and effects ----------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    subject: Any
    act: str
    purpose: str
    dataset: str
    kinds: Mapping[str, Kind | None]

    def names(self, params: Mapping[str, str]) -> dict[str, Any]:
        # r_obj carries only the dataset: columns never reach the concrete evaluator.
        obj = types.SimpleNamespace(dataset=self.dataset)
        values = (self.subject, obj, self.act, self.purpose)
        return dict(zip(REQUEST_TOKENS, values, strict=True), **params)


def _evaluate(evaluator: Any, request: _Request, params: Mapping[str, str]) -> _Sym:
    tree = evaluator.ast_parsed_value
    if tree is None:
        return _Raise("empty matcher")
    return _PartialEvaluator(evaluator, request.names(params), request.kinds).peval(tree)


Eft = Literal["allow", "deny", "other"]


def _outcomes(
    model: Model, policies: list[list[str]], request: _Request
) -> Iterator[tuple[RowFilter, Eft]]:
    """(match filter, effect) per policy, lazily, in enforce's order."""
    tokens: list[str] = model["p"]["p"].tokens
    matcher: str = model["m"]["m"].value
    has_eval = bool(casbin_util.has_eval(matcher))
    shared = None
    if not has_eval:
        try:
            shared = _parse(matcher)
        except Exception:
            yield RAISES, "other"  # enforce parses before the loop and raises
            return
    eft_index = tokens.index("p_eft") if "p_eft" in tokens else None
    for values in policies:
        if len(values) != len(tokens):
            yield RAISES, "other"  # "invalid policy size"
            return
        eft: Eft = "allow"  # no eft field: every match allows
        if eft_index is not None:
            raw = values[eft_index]
            eft = "allow" if raw == "allow" else "deny" if raw == "deny" else "other"
        params = dict(zip(tokens, values, strict=True))
        try:
            evaluator = shared or _parse(_matcher_text(matcher, tokens, values))
        except Exception:
            yield RAISES, eft
            return
        yield _matched(_evaluate(evaluator, request, params)), eft


def _no_policy(model: Model, effect: Effect, request: _Request) -> RowFilter:
    """enforce with no p policy at all: the matcher runs once with every p field empty."""
    matcher: str = model["m"]["m"].value
    if casbin_util.has_eval(matcher):
        return FALSE  # enforce raises "please make sure rule exists in policy"
    try:
        evaluator = _parse(matcher)
    except Exception:
        return FALSE
    params = {token: "" for token in model["p"]["p"].tokens}
    truth = _truthy(_evaluate(evaluator, request, params))
    # Its effect is ALLOW when truthy, else INDETERMINATE; deny-override allows either way.
    return rf.or_(truth, TRUE) if effect == "deny-override" else truth


def _ok(match: RowFilter) -> RowFilter:
    """TRUE unless evaluating the policy raised."""
    return rf.or_(match, TRUE)


def _combine(effect: Effect, outcomes: Iterator[tuple[RowFilter, Eft]]) -> RowFilter:
    """The effect over the policies' outcomes, stopping where enforce would break."""
    seen: list[tuple[RowFilter, Eft]] = []
    for match, eft in outcomes:
        seen.append((match, eft))
        if match == RAISES or (match == TRUE and _decisive(effect, eft)):
            break
    if effect == "deny-override":
        return rf.and_(*(rf.not_(m) if e == "deny" else _ok(m) for m, e in seen))
    if effect == "allow-and-deny":
        checks = [rf.not_(m) if e == "deny" else _ok(m) for m, e in seen]
        return rf.and_(*checks, rf.or_(*(m for m, e in seen if e == "allow")))
    if effect == "allow-override":
        # One flat Or: an allow match ends it TRUE; any other rule can only end it by raising.
        return rf.or_(*(m if e == "allow" else _raise_or_false(m) for m, e in seen))
    # priority: an allow match ends TRUE, a deny match FALSE. Folding from the end, rules that
    # decide nothing join whichever junction follows, so nesting grows only where allow and
    # deny rules alternate.
    result: RowFilter = FALSE
    for match, eft in reversed(seen):
        if eft == "allow":
            result = rf.or_(match, result)
        elif eft == "deny":
            result = rf.and_(rf.not_(match), result)
        elif isinstance(result, rf.Or):
            result = rf.or_(_raise_or_false(match), result)
        else:
            result = rf.and_(_ok(match), result)
    return result


def _raise_or_false(match: RowFilter) -> RowFilter:
    """NULL where the policy raised, else FALSE: a step that lets an Or chain go on."""
    return rf.and_(_ok(match), FALSE)


def _decisive(effect: Effect, eft: Eft) -> bool:
    """Whether a matching policy with this effect ends enforce's loop."""
    if effect == "allow-override":
        return eft == "allow"
    if effect == "priority":
        return eft in ("allow", "deny")
    return eft == "deny"


def _column_kinds(columns: Mapping[str, str]) -> dict[str, Kind | None]:
    if "dataset" in columns:
        raise PolicyCompileError("a column named 'dataset' collides with r.obj.dataset")
    return {name: _KINDS.get(str(kind).strip().upper()) for name, kind in columns.items()}


def compile_row_filter(
    model: Model,
    rules: Sequence[Sequence[str]],
    *,
    subject: Mapping[str, object],
    act: str,
    purpose: str,
    dataset: str,
    columns: Mapping[str, str],
) -> RowFilter:
    """The row filter equivalent to ``enforce(sub, row, act, purpose)`` for every row.

    ``rules`` are ``[ptype, v0, v1, ...]``; only ``p`` rules take part. ``columns`` maps every
    column of the dataset (all of them reach ``r.obj``) to its DuckDB type.
    """
    _validate_model(model)
    effect = _effect(model)
    if not all(isinstance(key, str) for key in subject):
        raise PolicyCompileError("subject attribute names must be strings")
    request = _Request(
        subject=types.SimpleNamespace(**subject),
        act=act,
        purpose=purpose,
        dataset=dataset,
        kinds=_column_kinds(columns),
    )
    policies = _ordered_policies(model, [list(r[1:]) for r in rules if r and r[0] == "p"])
    try:
        if not policies:
            return _only_truth_matters(rf.simplify(_no_policy(model, effect, request)))
        combined = _combine(effect, _outcomes(model, policies, request))
        return _only_truth_matters(rf.simplify(combined))
    except RecursionError as exc:
        raise PolicyCompileError(
            "the policy is too deeply nested to compile (for instance very many alternating "
            "allow and deny rules under priority)"
        ) from exc


def _only_truth_matters(f: RowFilter) -> RowFilter:
    """A filter TRUE on exactly the same rows, simplified where NULL and FALSE may trade.

    The compiled filter selects where it is TRUE; whether a row is left out because enforce
    would raise (NULL) or deny (FALSE) no longer matters at the top. So a top-level And with a
    FALSE or NULL operand is FALSE, a "policy m does not raise" check is redundant next to m's
    own conjuncts, and an Or ending in NULL can drop that operand.
    """
    if isinstance(f, rf.Const):
        return FALSE if f.value is None else f
    if isinstance(f, rf.Or):
        ops = list(f.operands)
        if ops[-1] == RAISES:
            ops.pop()
        *head, last = ops
        return rf.or_(*head, _only_truth_matters(last))
    if not isinstance(f, rf.And):
        return f
    ops = [_only_truth_matters(op) for op in f.operands]
    if FALSE in ops:
        return FALSE
    present = {_filter_key(op) for op in ops}

    def implied(index: int, op: RowFilter) -> bool:
        if isinstance(op, rf.Not) and isinstance(op.operand, rf.IsNull):
            # "c IS NOT NULL" next to a comparison that is TRUE only on non-NULL c.
            name = op.operand.column.name
            others = (o for i, o in enumerate(ops) if i != index)
            return any(name in rf.nonnull_if_true(o) for o in others)
        if not (isinstance(op, rf.Or) and len(op.operands) == 2 and op.operands[1] == TRUE):
            return False
        inner = op.operands[0]
        conjuncts = inner.operands if isinstance(inner, rf.And) else (inner,)
        return all(_filter_key(c) in present for c in conjuncts)

    return rf.and_(*(op for i, op in enumerate(ops) if not implied(i, op)))


def _filter_key(f: RowFilter) -> str:
    return json.dumps(rf.to_json(f), sort_keys=True)
