from __future__ import annotations

import json

import pytest

from govern.errors import BadRequest
from govern.flight.ticket import MAX_TICKET_BYTES, ReadCommand, ReadTicket


def test_ticket_round_trips_as_compact_json() -> None:
    t = ReadTicket(
        dataset="patient_notes",
        purpose="training",
        run_id="run-1",
        columns=["note", "age"],
        version=2,
        shard=(1, 4),
    )
    data = t.encode()
    assert json.loads(data) == {
        "v": 1,
        "dataset": "patient_notes",
        "purpose": "training",
        "run_id": "run-1",
        "columns": ["note", "age"],
        "version": 2,
        "shard": [1, 4],
    }
    assert ReadTicket.decode(data) == t
    req = t.request()
    assert (req.dataset, req.version, req.shard, list(req.columns or [])) == (
        "patient_notes",
        2,
        (1, 4),
        ["note", "age"],
    )


def test_optional_fields_may_be_left_out() -> None:
    t = ReadTicket.decode(b'{"dataset": "chat_logs", "purpose": "evaluation"}')
    assert (t.version, t.run_id, t.columns, t.shard) == (None, None, None, None)
    assert json.loads(t.encode()) == {"v": 1, "dataset": "chat_logs", "purpose": "evaluation"}


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"dataset": "x"}',
        b'{"dataset": "x", "purpose": "training", "extra": 1}',
        b'{"dataset": "x", "purpose": "training", "v": 2}',
        b'{"dataset": "x", "purpose": "training", "shard": [4, 0]}',
        b'{"dataset": "x", "purpose": "training", "shard": [-1, 2]}',
        b'{"dataset": "x", "purpose": "training", "version": 0}',
        b'{"dataset": "x", "purpose": "training", "columns": "note"}',
        b'{"dataset": "", "purpose": "training"}',
    ],
)
def test_malformed_tickets_are_bad_requests(data: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        ReadTicket.decode(data)
    assert info.value.to_body()["error"] == "bad_request"


def test_oversized_tickets_are_refused_before_parsing() -> None:
    with pytest.raises(BadRequest, match="at most"):
        ReadTicket.decode(b" " * (MAX_TICKET_BYTES + 1))


def test_a_command_splits_into_pinned_shard_tickets() -> None:
    cmd = ReadCommand.decode(b'{"dataset": "events", "purpose": "training", "shards": 3}')
    tickets = cmd.tickets(version=7)
    assert [t.shard for t in tickets] == [(0, 3), (1, 3), (2, 3)]
    assert {t.version for t in tickets} == {7}
    # A ticket never carries the shard count of a command.
    assert all("shards" not in json.loads(t.encode()) for t in tickets)
    single = ReadCommand.decode(b'{"dataset": "events", "purpose": "training"}').tickets(3)
    assert len(single) == 1 and single[0].shard is None and single[0].version == 3
    both = ReadCommand.decode(
        b'{"dataset": "events", "purpose": "training", "shards": 2, "shard": [0, 2]}'
    )
    with pytest.raises(BadRequest):
        both.tickets(1)
