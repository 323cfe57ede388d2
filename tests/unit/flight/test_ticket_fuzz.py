"""Hypothesis over ticket, command and action decoding: any bytes a client sends either decode
into a valid request that round-trips, or are refused with BadRequest; nothing else escapes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from govern.errors import BadRequest
from govern.flight.ticket import ReadCommand, ReadTicket, RecipeAction

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "v": st.integers(-2, 3) | st.text(max_size=3),
        "dataset": st.text(max_size=70),
        "purpose": st.text(max_size=110),
        "version": st.integers(-5, 2**70) | st.none() | st.text(max_size=5),
        "run_id": st.text(max_size=210) | st.none(),
        "columns": st.lists(st.text(max_size=70), max_size=5) | st.none() | st.text(max_size=5),
        "shard": st.lists(st.integers(-3, 70_000), max_size=3) | st.none(),
        "shards": st.integers(-3, 2000),
        "recipe": _JSON,
        "extra": _JSON,
    },
)
_BLOBS = (
    st.binary(max_size=400)
    | _FIELDS.map(lambda d: json.dumps(d).encode())
    | _JSON.map(lambda d: json.dumps(d).encode())
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(data=_BLOBS)
def test_any_bytes_decode_to_a_valid_ticket_or_a_bad_request(data: bytes) -> None:
    for cls in (ReadTicket, ReadCommand):
        try:
            ticket = cls.decode(data)
        except BadRequest:
            continue
        assert cls.decode(ticket.encode()) == ticket  # what decodes is what it encodes
        assert 1 <= len(ticket.dataset) <= 63 and 1 <= len(ticket.purpose) <= 100
        if ticket.shard is not None:
            index, count = ticket.shard
            assert index >= 0 and count >= 1


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=_BLOBS)
def test_any_bytes_decode_to_a_recipe_action_or_a_bad_request(data: bytes) -> None:
    try:
        action = RecipeAction.decode(data)
    except BadRequest:
        return
    assert 1 <= len(action.run_id) <= 200
