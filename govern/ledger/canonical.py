"""Canonical leaf bytes of a log entry: RFC 8785 JSON Canonicalization Scheme (JCS).

A leaf must hash the same wherever it is recomputed (another replica, an auditor's machine, a
different language), so entries are serialised with JCS: object members sorted by their UTF-16
code units, no insignificant whitespace, numbers in the ECMAScript shortest form, strings in
UTF-8 with minimal escaping. The serialiser is the ``rfc8785`` package.

JCS restricts values to I-JSON: integers beyond +-(2**53 - 1), NaN and infinities are refused
(carry large numbers such as nanosecond timestamps as strings), and so are non-string keys and
strings holding lone surrogates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import rfc8785

from govern.errors import ValidationError

__all__ = ["CanonicalJSONError", "JSONValue", "canonical_json", "entry_leaf_bytes", "parse_leaf"]

JSONValue: TypeAlias = (
    "bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
)


class CanonicalJSONError(ValidationError):
    """A value has no RFC 8785 canonical form, or leaf bytes are not in it."""

    code = "not_canonical_json"


def canonical_json(value: JSONValue) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value (dict, list, tuple, str, number, ...)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalJSONError(f"value has no canonical JSON form: {exc}") from exc
    except RecursionError as exc:
        raise CanonicalJSONError("value is nested too deeply") from exc


def entry_leaf_bytes(entry: Mapping[str, JSONValue]) -> bytes:
    """Leaf bytes of a log entry, which must be a JSON object (a ``dict``)."""
    # rfc8785 serialises dict only; other mappings would fail inside it with a vaguer message.
    if not isinstance(entry, dict):
        raise CanonicalJSONError(f"a log entry must be a dict, not {type(entry).__name__}")
    return canonical_json(entry)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys; I-JSON (and so JCS) forbids them.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise CanonicalJSONError("duplicate key in JSON object")
    return result


def _refuse_constant(name: str) -> Any:
    raise CanonicalJSONError(f"{name} is not JSON")


def parse_leaf(leaf: bytes) -> dict[str, Any]:
    """Parse leaf bytes back into the entry, checking they are exactly its canonical form.

    An auditor uses this to be sure the bytes a log served are the only encoding of the entry.
    """
    try:
        entry = json.loads(
            leaf.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CanonicalJSONError(f"leaf is not JSON: {exc}") from exc
    if not isinstance(entry, dict):
        raise CanonicalJSONError("leaf is not a JSON object")
    if canonical_json(entry) != leaf:
        raise CanonicalJSONError("leaf bytes are JSON but not in RFC 8785 canonical form")
    return entry
