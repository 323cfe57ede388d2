"""What an uploaded matcher may reach: the request and policy fields, Casbin's functions, and
plain values; never Python's internals.

Casbin evaluates matchers with simpleeval, which refuses private attributes (``__class__``,
``func_globals``), a few methods (``format``, ``mro``) and expressions it has no evaluator for
(``lambda``, ``:=``) when it meets them. A rule that tries them can therefore only raise, which
is a deny; but unchecked it would be accepted, stored and logged as a policy change, and deny
every request that reaches it. It is refused at upload instead, naming what it tried.
"""

from __future__ import annotations

import ast
from collections.abc import Set
from typing import Any, Final

import simpleeval
from casbin import util as casbin_util
from casbin.core_enforcer import CoreEnforcer
from casbin.model import FunctionMap

from govern.errors import PolicyInvalid

__all__ = ["check_expression", "check_reach"]

_PREFIXES: Final = tuple(simpleeval.DISALLOW_PREFIXES)
_METHODS: Final = frozenset(simpleeval.DISALLOW_METHODS)


def check_reach(evaluator: Any, where: str) -> None:
    """Refuse (422) a parsed matcher that names a disallowed attribute or uses an expression
    the evaluator cannot run. ``evaluator`` is Casbin's SimpleEval for the matcher."""
    tree = evaluator.ast_parsed_value
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (
            node.attr.startswith(_PREFIXES) or node.attr in _METHODS
        ):
            raise PolicyInvalid(
                f"{where}: attribute {node.attr[:64]!r} is not reachable from a policy",
                details={"attribute": node.attr[:64]},
            )
        if isinstance(node, ast.expr) and type(node) not in evaluator.nodes:
            raise PolicyInvalid(
                f"{where}: a {type(node).__name__} expression cannot be evaluated in a policy",
                details={"expression": type(node).__name__},
            )


def check_expression(text: str, names: Set[str], where: str) -> None:
    """Refuse (422) a rule field that Casbin inlines with ``eval()`` (a column rule's
    sub_rule) unless it parses as Casbin will parse it, names only ``names`` and Casbin's
    functions, and reaches nothing private."""
    functions = FunctionMap.load_function_map().get_functions()
    try:
        # In parentheses, as Casbin's replace_eval inlines it: "a; import os" does not parse.
        inlined = "(" + casbin_util.escape_assertion(text) + ")"
        evaluator = CoreEnforcer._get_expression(inlined, functions)
    except Exception as exc:
        raise PolicyInvalid(f"{where}: does not parse ({type(exc).__name__})") from None
    tree = evaluator.ast_parsed_value
    if tree is None:
        raise PolicyInvalid(f"{where}: is empty")
    bound = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    allowed = set(names) | set(functions) | bound
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in allowed:
            raise PolicyInvalid(
                f"{where}: name {node.id[:64]!r} is not defined (booleans are True and False)",
                details={"name": node.id[:64]},
            )
    check_reach(evaluator, where)
