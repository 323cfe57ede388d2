"""The connector's shard arithmetic: torch-free, so it is tested here on its own."""

from __future__ import annotations

import pytest
from govern_connect import env_rank_world, shard_for, ticket


def test_every_rank_and_worker_gets_a_distinct_shard_covering_all() -> None:
    world, workers = 3, 4
    shards = [
        shard_for(rank=r, world_size=world, worker=w, num_workers=workers)
        for r in range(world)
        for w in range(workers)
    ]
    assert sorted(i for i, _ in shards) == list(range(world * workers))
    assert {n for _, n in shards} == {world * workers}


def test_out_of_range_ranks_and_workers_are_refused() -> None:
    with pytest.raises(ValueError):
        shard_for(rank=2, world_size=2, worker=0, num_workers=1)
    with pytest.raises(ValueError):
        shard_for(rank=0, world_size=1, worker=1, num_workers=1)
    with pytest.raises(ValueError):
        shard_for(rank=0, world_size=0, worker=0, num_workers=1)


def test_rank_and_world_come_from_the_environment() -> None:
    assert env_rank_world({}) == (0, 1)
    assert env_rank_world({"RANK": "3", "WORLD_SIZE": "8"}) == (3, 8)
    with pytest.raises(ValueError):
        env_rank_world({"RANK": "x"})


def test_the_connector_ticket_matches_the_gateway_ticket_model() -> None:
    from govern.flight.ticket import ReadCommand, ReadTicket

    t = ticket(
        "events",
        purpose="training",
        run_id="r",
        columns=["value", "_row_id"],
        version=2,
        shard=(1, 3),
    )
    parsed = ReadTicket.decode(t)
    assert parsed.columns == ["value"]  # the row id always comes; never asked for
    assert (parsed.version, parsed.shard, parsed.run_id) == (2, (1, 3), "r")
    assert ReadTicket.decode(ticket("events", purpose="training", shard=(0, 1))).shard is None
    assert ReadCommand.decode(ticket("events", purpose="training", shards=4)).shards == 4
    with pytest.raises(TypeError):
        ticket("events", purpose="training", columns="value")
