"""Canonical leaf bytes (RFC 8785), checked against the RFC's own examples."""

from __future__ import annotations

import json
import struct

import pytest

from govern.errors import ValidationError
from govern.ledger.canonical import (
    CanonicalJSONError,
    canonical_json,
    entry_leaf_bytes,
    parse_leaf,
)


def test_rfc8785_section_3_2_2_example() -> None:
    # The input of RFC 8785 section 3.2.2, parsed as JSON, and its canonical form (3.2.4).
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonical_json(json.loads(source)) == expected


def test_rfc8785_section_3_2_3_sorts_by_utf16_code_units() -> None:
    entry = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(entry_leaf_bytes(entry)))
    # U+1F600 is the surrogate pair D83D DE00, so it sorts before U+FB33 though its code point
    # is larger.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        # RFC 8785 appendix B: IEEE 754 bit patterns and their JSON text.
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_rfc8785_appendix_b_numbers(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == text.encode()


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        2**53,  # outside I-JSON's exact integer range
        {1: "non-string key"},
        {"bytes": b"raw"},
        {"set": {1, 2}},
        "lone surrogate \ud800",
    ],
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(CanonicalJSONError) as info:
        canonical_json(value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValidationError)
    assert info.value.http_status == 422


def test_entry_must_be_an_object() -> None:
    for bad in ([1, 2], "text", None):
        with pytest.raises(CanonicalJSONError):
            entry_leaf_bytes(bad)  # type: ignore[arg-type]


def test_deeply_nested_value_is_refused_not_crashed() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(CanonicalJSONError):
        canonical_json(value)  # type: ignore[arg-type]


def test_same_entry_same_bytes_whatever_the_key_order() -> None:
    a = {"who": "alice", "action": "read", "at": "2026-11-23T12:00:00Z", "n": 1.0}
    b = {"n": 1, "at": "2026-11-23T12:00:00Z", "action": "read", "who": "alice"}
    assert entry_leaf_bytes(a) == entry_leaf_bytes(b)
    assert (
        entry_leaf_bytes(a) == b'{"action":"read","at":"2026-11-23T12:00:00Z","n":1,"who":"alice"}'
    )


def test_parse_leaf_round_trips() -> None:
    entry = {"subject": "\u00e9l\u00e8ve", "columns": ["a", "b"], "allowed": True, "n": 0.5}
    assert parse_leaf(entry_leaf_bytes(entry)) == entry


@pytest.mark.parametrize(
    "leaf",
    [
        b'{"b":1,"a":2}',  # keys out of order
        b'{"a": 1}',  # whitespace
        b'{"a":1.0}',  # not the shortest number form
        b'{"a":1,"a":1}',  # duplicate key
        b'{"a":NaN}',
        b"[1,2]",  # not an object
        b'{"a":"\xff"}',  # not UTF-8
        b"not json",
        b'{"a":"\\u00e9"}',  # needless escape
    ],
)
def test_parse_leaf_refuses_non_canonical_bytes(leaf: bytes) -> None:
    with pytest.raises(CanonicalJSONError):
        parse_leaf(leaf)
