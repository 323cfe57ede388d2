"""govern_connect against a real Flight server: Arrow, DuckDB, PyTorch (DataLoader workers and
ranks) and Hugging Face adapters, and the reference trainer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import govern_connect
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import torch
from govern_connect.pytorch import GovernIterableDataset
from pyroaring import BitMap
from torch.utils.data import DataLoader

from govern.catalog import ROW_ID
from govern.engine import Engine
from govern.flight import FlightServer
from govern.gateway import DecisionRequest, Gateway
from tests.conftest import TEST_ACTOR
from tests.reference_trainer import reference_trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(gateway: Gateway, server: FlightServer) -> Iterator[govern_connect.Client]:
    token = trainer_token(gateway)
    with govern_connect.connect(server.location, token) as c:
        yield c


def trainer_token(gateway: Gateway) -> str:
    return gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token


def ids(rows: pa.Table | list[dict[str, Any]]) -> BitMap:
    if isinstance(rows, pa.Table):
        return BitMap(rows.column(ROW_ID).to_pylist())
    return BitMap(r[ROW_ID] for r in rows)


def expected(gateway: Gateway, dataset: str, purpose: str = "training") -> pa.Table:
    caller = gateway.decider.authenticate(trainer_token(gateway))
    plan = gateway.decider.decide(caller, DecisionRequest(dataset, purpose))
    engine = Engine()
    try:
        return engine.table(gateway.queries.dataset(dataset), plan)
    finally:
        engine.close()


def recorded(gateway: Gateway, run_id: str, dataset: str) -> BitMap:
    return gateway.queries.run_rows(run_id, gateway.queries.dataset(dataset).version_id)


def test_read_reader_and_duckdb_agree_with_the_plan(
    gateway: Gateway, client: govern_connect.Client
) -> None:
    want = expected(gateway, "chat_logs")
    table = client.read("chat_logs", purpose="training", run_id="c1")
    assert table.sort_by(ROW_ID).equals(want.sort_by(ROW_ID))
    reader = client.reader("chat_logs", purpose="training", run_id="c1", columns=["country"])
    assert isinstance(reader, pa.RecordBatchReader)
    assert reader.schema.names == ["country", ROW_ID]
    assert reader.read_all().num_rows == want.num_rows
    con = duckdb.connect()
    rel = client.duckdb("chat_logs", purpose="training", run_id="c1", connection=con)
    counts = dict(rel.aggregate("country, count(*)", "country").fetchall())
    assert counts == dict(duckdb.sql("SELECT country, count(*) FROM want GROUP BY 1").fetchall())
    assert recorded(gateway, "c1", "chat_logs") == ids(want)
    # Without a connection, the relation brings its own.
    own = client.duckdb("chat_logs", purpose="training", run_id="c1", columns=["country"])
    assert own.aggregate("count(*)").fetchall() == [(want.num_rows,)]
    assert client.schema("chat_logs", purpose="training", run_id="c1") == table.schema
    assert client.resolve_version("chat_logs", purpose="training", run_id="c1") == 1


def test_read_many_reads_datasets_in_parallel(
    gateway: Gateway, client: govern_connect.Client
) -> None:
    names = ["patient_notes", "chat_logs", "code_corpus", "events"]
    tables = client.read_many(names, purpose="training", run_id="many")
    assert list(tables) == names
    for name, table in tables.items():
        assert ids(table) == ids(expected(gateway, name)) == recorded(gateway, "many", name)


def test_errors_carry_the_json_body(gateway: Gateway, server: FlightServer) -> None:
    with (
        govern_connect.connect(server.location, "not-a-token") as bad,
        pytest.raises(flight.FlightUnauthenticatedError) as info,
    ):
        bad.read("events", purpose="training", run_id="x")
    assert govern_connect.error_body(info.value) == {
        "error": "unauthenticated",
        "message": "invalid token",
        "details": {"reason": "invalid"},
    }
    token = trainer_token(gateway)
    with govern_connect.connect(server.location, token) as c:
        with pytest.raises(flight.FlightServerError) as missing:
            c.read("events", purpose="training")
        assert (govern_connect.error_body(missing.value) or {})["error"] == "bad_request"
        with pytest.raises(flight.FlightUnauthorizedError) as denied:
            c.read("events", purpose="advertising", run_id="x")
        assert (govern_connect.error_body(denied.value) or {})["error"] == "forbidden"
    assert govern_connect.error_body(ValueError("plain")) is None
    with pytest.raises(ValueError):
        govern_connect.connect(server.location, "")


# -- PyTorch --------------------------------------------------------------------------------


def test_torch_dataset_shards_across_dataloader_workers(
    gateway: Gateway, client: govern_connect.Client
) -> None:
    data = client.torch_dataset(
        "chat_logs", run_id="torch-workers", columns=["country", "toxicity"]
    )
    loader = DataLoader(data, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    rows = list(loader)
    want = ids(expected(gateway, "chat_logs"))
    assert len(rows) == len(want) and ids(rows) == want  # each row once, across both workers
    assert recorded(gateway, "torch-workers", "chat_logs") == want
    # Batched by default_collate when asked: tensors for numbers, lists for strings.
    batch = next(iter(DataLoader(data, batch_size=8)))
    assert batch["toxicity"].dtype == torch.float64 and len(batch["country"]) == 8


def test_torch_dataset_shards_across_ranks(
    gateway: Gateway, client: govern_connect.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = client.resolve_version("events", purpose="training", run_id="ranks")
    per_rank = []
    for rank in range(2):
        data = GovernIterableDataset(
            client.url,
            trainer_token(gateway),
            "events",
            purpose="training",
            run_id="ranks",
            version=version,
            columns=["value"],
            rank=rank,
            world_size=2,
        )
        assert data.shard() == (rank, 2)
        per_rank.append(ids(list(data)))
    assert not per_rank[0] & per_rank[1]
    assert per_rank[0] | per_rank[1] == ids(expected(gateway, "events"))
    # torchrun's environment is honoured when no rank is given.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    data = client.torch_dataset("events", run_id="ranks", columns=["value"])
    assert data.shard() == (1, 4)
    with pytest.raises(ValueError, match="run id"):
        GovernIterableDataset(client.url, "t", "events", purpose="training", run_id="", version=1)


def test_forked_workers_are_refused_instead_of_hanging(client: govern_connect.Client) -> None:
    data = client.torch_dataset("events", run_id="forked", columns=["value"])
    loader = DataLoader(data, batch_size=None, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(RuntimeError, match="spawn"):
        next(iter(loader))


# -- Hugging Face ---------------------------------------------------------------------------


def test_hf_dataset_and_iterable_dataset(gateway: Gateway, client: govern_connect.Client) -> None:
    import datasets

    want = expected(gateway, "code_corpus")
    ds = client.hf_dataset("code_corpus", run_id="hf", columns=["language", "stars"])
    assert isinstance(ds, datasets.Dataset)
    assert len(ds) == want.num_rows
    assert set(ds.column_names) == {"language", "stars", ROW_ID}
    stream = client.hf_iterable_dataset(
        "code_corpus", run_id="hf-stream", columns=["language"], num_shards=3
    )
    assert isinstance(stream, datasets.IterableDataset)
    assert stream.num_shards == 3
    rows = list(stream)
    assert ids(rows) == ids(want) and len(rows) == want.num_rows
    assert recorded(gateway, "hf-stream", "code_corpus") == ids(want)
    # Two DataLoader workers split the shards between them.
    rows = list(DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="spawn"))
    assert ids(rows) == ids(want) and len(rows) == want.num_rows


# -- the reference trainer ------------------------------------------------------------------


def test_the_reference_trainer_learns_and_its_run_is_recorded(
    gateway: Gateway, server: FlightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = trainer_token(gateway)
    result = reference_trainer().main(
        ["--flight-url", server.location, "--token", token, "--run-id", "ref-1", "--epochs", "4"]
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["loss"][-1] < result["loss"][0]
    assert result["held_out_accuracy"] > 0.5
    _, reads = gateway.queries.run(gateway.operator, "ref-1")
    assert [(r.dataset, r.row_count) for r in reads] == [
        ("patient_notes", expected(gateway, "patient_notes").num_rows)
    ]
