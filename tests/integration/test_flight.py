"""The Flight server for real: a gRPC server on a free loopback port, the real gateway over
SQLite and PostgreSQL, the demo at small scale, pyarrow's own Flight client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
from pyroaring import BitMap

from govern.catalog import ROW_ID
from govern.engine import Engine
from govern.flight import FlightServer
from govern.gateway import DecisionRequest, Gateway
from tests.conftest import TEST_ACTOR, free_port, wait_for
from tests.unit.flight.serving import (
    EVENTS_RULES,
    demo_rules,
    load_events,
    load_small_demo,
)

DEMO = ("patient_notes", "chat_logs", "code_corpus")


@pytest.fixture
def token(gateway: Gateway, server: FlightServer) -> str:
    return gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token


def options(token: str | None) -> flight.FlightCallOptions:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    return flight.FlightCallOptions(headers=headers)


def ticket(**fields: Any) -> flight.Ticket:
    return flight.Ticket(json.dumps({"purpose": "training", **fields}).encode())


def do_get(server: FlightServer, token: str | None, **fields: Any) -> pa.Table:
    with flight.connect(server.location) as client:
        table: pa.Table = client.do_get(ticket(**fields), options(token)).read_all()
        return table


def body(exc: BaseException) -> dict[str, Any]:
    """The JSON error body at the start of a Flight error message."""
    parsed, _ = json.JSONDecoder().raw_decode(str(exc))
    assert isinstance(parsed, dict)
    assert set(parsed) == {"error", "message", "details"}
    return parsed


def entries(gateway: Gateway, start: int = 0) -> list[dict[str, Any]]:
    """The access log's entries from ``start`` on, as the local operator reads them."""
    views = gateway.queries.ledger_entries(gateway.operator, start=start, limit=100_000)
    return [v.entry for v in views]


def ids(table: pa.Table) -> BitMap:
    return BitMap(table.column(ROW_ID).to_pylist())


# -- what is served -------------------------------------------------------------------------


def test_each_demo_dataset_streams_exactly_what_the_plan_allows(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    caller = gateway.decider.authenticate(token)
    engine = Engine()
    try:
        for dataset in DEMO:
            received = do_get(server, token, dataset=dataset, run_id="exact")
            info = gateway.queries.dataset(dataset)
            plan = gateway.decider.decide(caller, DecisionRequest(dataset, "training"))
            expected = engine.table(info, plan)
            assert received.num_rows == expected.num_rows > 0, dataset
            assert received.sort_by(ROW_ID).equals(expected.sort_by(ROW_ID)), dataset
            # Exactly the rows the Plan allows: fewer than the version holds (row filters).
            assert received.num_rows < info.row_count
            assert gateway.queries.run_rows("exact", info.version_id) == ids(received)
    finally:
        engine.close()


def test_masks_are_applied_on_the_wire(gateway: Gateway, server: FlightServer, token: str) -> None:
    notes = do_get(server, token, dataset="patient_notes", run_id="m")
    raw = pa.parquet.read_table(gateway.queries.dataset("patient_notes").path)
    assert not set(notes.column("patient_id").to_pylist()) & set(
        raw.column("patient_id").to_pylist()
    )
    assert all(len(v) == 64 for v in notes.column("patient_id").to_pylist())  # hashed
    assert {d.day for d in notes.column("admitted").to_pylist()} == {1}  # generalised
    assert pc.all(pc.greater_equal(notes.column("age"), 16)).as_py()  # minors filtered, noised
    assert set(notes.column("region").to_pylist()) == {"eu"}  # row filter: the caller's region
    chat = do_get(server, token, dataset="chat_logs", run_id="m")
    assert not any("@" in v for v in chat.column("email").to_pylist())


def test_flight_info_describes_the_stream_and_splits_it_into_shards(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    command = json.dumps({"dataset": "events", "purpose": "training", "run_id": "s", "shards": 4})
    with flight.connect(server.location) as client:
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(command.encode()), options(token)
        )
        schema = client.get_schema(
            flight.FlightDescriptor.for_command(command.encode()), options(token)
        ).schema
        parts = [client.do_get(e.ticket, options(token)).read_all() for e in info.endpoints]
    assert info.schema == schema == parts[0].schema
    assert len(info.endpoints) == 4
    assert {json.loads(e.ticket.ticket)["version"] for e in info.endpoints} == {1}
    sets = [ids(p) for p in parts]
    assert sum(len(s) for s in sets) == len(BitMap.union(*sets))  # disjoint
    whole = do_get(server, token, dataset="events", run_id="whole")
    assert BitMap.union(*sets) == ids(whole)
    version_id = gateway.queries.dataset("events").version_id
    assert gateway.queries.run_rows("s", version_id) == ids(whole)


def test_several_datasets_read_in_parallel(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    results: dict[str, pa.Table] = {}
    errors: list[BaseException] = []

    def read(dataset: str) -> None:
        try:
            results[dataset] = do_get(server, token, dataset=dataset, run_id="parallel")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(d,)) for d in (*DEMO, "events")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 4
    _, run_reads = gateway.queries.run(gateway.operator, "parallel")
    reads = {r.dataset: r.row_count for r in run_reads}
    assert reads == {d: t.num_rows for d, t in results.items()}


def test_the_decision_and_the_read_are_logged_before_the_first_batch(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    before = gateway.queries.log_size()
    with flight.connect(server.location) as client:
        stream = client.do_get(ticket(dataset="events", run_id="log"), options(token))
        first = stream.read_chunk().data
        assert first.num_rows > 0
        # The first batch is here: its decision and read entries are already durable.
        kinds = entries(gateway, start=before)
        decision = next(e for e in kinds if e["kind"] == "decision")
        read = next(e for e in kinds if e["kind"] == "read")
        assert decision["data"]["decision"] == "allow"
        assert read["data"]["run_id"] == "log" and read["data"]["dataset"] == "events"
        rest = stream.read_all()
    wait_for(lambda: server.active_reads == 0)
    ends = entries(gateway, start=before)
    end = next(e for e in ends if e["kind"] == "read.end")
    assert end["data"]["state"] == "complete"
    assert end["data"]["rows"] == first.num_rows + rest.num_rows


# -- bad input ------------------------------------------------------------------------------


def test_missing_forged_expired_and_revoked_tokens(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    cases: dict[str, str | None] = {"missing": None}
    claims = jwt.decode(token, options={"verify_signature": False})
    cases["forged"] = jwt.encode(claims, "an-attacker-key-" * 3, algorithm="HS256")
    cases["expired"] = gateway.commands.issue_token(
        "demo-trainer", "trainer", TEST_ACTOR, ttl_seconds=1
    ).token
    revoked = gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
    jti = str(jwt.decode(revoked, options={"verify_signature": False})["jti"])
    gateway.commands.revoke_token(jti, TEST_ACTOR)
    cases["revoked"] = revoked
    time.sleep(2.1)
    descriptor = flight.FlightDescriptor.for_command(b'{"dataset": "events"}')
    for name, bad in cases.items():
        with pytest.raises(flight.FlightUnauthenticatedError) as info:
            do_get(server, bad, dataset="patient_notes", run_id="x")
        assert body(info.value)["error"] == "unauthenticated", name
        with flight.connect(server.location) as client:
            with pytest.raises(flight.FlightUnauthenticatedError) as info:
                client.get_flight_info(descriptor, options(bad))
            assert body(info.value)["error"] == "unauthenticated", name
    assert body(info.value)["details"] == {"reason": "revoked"}


@pytest.mark.parametrize(
    ("fields", "error", "code"),
    [
        ({"dataset": "nope", "run_id": "x"}, flight.FlightServerError, "dataset_not_found"),
        (
            {"dataset": "patient_notes", "run_id": "x", "version": 42},
            flight.FlightServerError,
            "version_not_found",
        ),
        ({"dataset": "patient_notes"}, flight.FlightServerError, "bad_request"),
        (
            {"dataset": "patient_notes", "run_id": "x", "purpose": "marketing"},
            flight.FlightUnauthorizedError,
            "forbidden",
        ),
        (
            {"dataset": "patient_notes", "run_id": "x", "columns": ["nope"]},
            flight.FlightServerError,
            "bad_request",
        ),
        (
            {"dataset": "patient_notes", "run_id": "x", "extra": 1},
            flight.FlightServerError,
            "bad_request",
        ),
    ],
)
def test_bad_requests_are_clear_flight_errors(
    server: FlightServer,
    token: str,
    fields: dict[str, Any],
    error: type[Exception],
    code: str,
) -> None:
    with pytest.raises(error) as info:
        do_get(server, token, **fields)
    assert body(info.value)["error"] == code
    assert "Traceback" not in str(info.value)


def test_a_dropped_column_asked_for_is_refused_and_never_sent(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    drop = ["p2", "r.sub.role == 'trainer'", "*", "pii.email", "*", "drop"]
    gateway.commands.put_policy(None, demo_rules(*EVENTS_RULES, drop), TEST_ACTOR)
    chat = do_get(server, token, dataset="chat_logs", run_id="d")
    assert "email" not in chat.column_names
    with pytest.raises(flight.FlightUnauthorizedError) as info:
        do_get(server, token, dataset="chat_logs", run_id="d", columns=["message", "email"])
    assert body(info.value)["details"]["columns"] == ["email"]


def test_someone_elses_run_cannot_be_extended(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    do_get(server, token, dataset="code_corpus", run_id="owned")
    gateway.commands.put_principal("mallory", ["trainer"], {"region": "eu"}, TEST_ACTOR)
    other = gateway.commands.issue_token("mallory", "trainer", TEST_ACTOR).token
    with pytest.raises(flight.FlightUnauthorizedError) as info:
        do_get(server, other, dataset="code_corpus", run_id="owned")
    assert "another principal" in body(info.value)["message"]


def test_unsupported_calls_are_refused_cleanly(server: FlightServer, token: str) -> None:
    with flight.connect(server.location) as client:
        with pytest.raises(flight.FlightServerError) as info:
            list(client.list_flights(options=options(token)))
        assert body(info.value)["error"] == "bad_request"
        with pytest.raises(flight.FlightServerError):
            list(client.do_action(flight.Action("x", b""), options(token)))
        with pytest.raises(flight.FlightServerError):
            client.get_flight_info(flight.FlightDescriptor.for_path("events"), options(token))
        # The only actions: the trainer's recipe calls (docs/unlearning.md).
        actions = [a.type for a in client.list_actions(options(token))]
        assert actions == ["recipe.put", "recipe.get"]


# -- disconnects ----------------------------------------------------------------------------


def test_a_cancelled_stream_records_only_what_was_written(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    version_id = gateway.queries.dataset("events").version_id
    with flight.connect(server.location) as client:
        stream = client.do_get(ticket(dataset="events", run_id="cancel"), options(token))
        received = ids(pa.Table.from_batches([stream.read_chunk().data]))
        stream.cancel()
    wait_for(lambda: server.active_reads == 0)
    recorded = gateway.queries.run_rows("cancel", version_id)
    whole = ids(do_get(server, token, dataset="events", run_id="cancel-whole"))
    assert received <= recorded < whole  # what arrived, perhaps buffered more, never the rest
    end = entries(gateway)
    aborted = [e for e in end if e["kind"] == "read.end" and e["data"]["run_id"] == "cancel"]
    assert aborted[-1]["data"]["state"] == "aborted"
    assert aborted[-1]["data"]["rows"] == len(recorded)


def test_a_client_killed_mid_stream_is_credited_with_what_was_written(
    gateway: Gateway, server: FlightServer, token: str, tmp_path: Path
) -> None:
    out = tmp_path / "received.json"
    script = textwrap.dedent(
        f"""
        import json, os, sys
        import pyarrow.flight as flight
        client = flight.connect({server.location!r})
        opts = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer {token}")])
        t = json.dumps({{"dataset": "events", "purpose": "training", "run_id": "killed"}})
        stream = client.do_get(flight.Ticket(t.encode()), opts)
        batch = stream.read_chunk().data
        with open({str(out)!r}, "w") as f:
            json.dump(batch.column("_row_id").to_pylist(), f)
        os._exit(0)  # no goodbye: the connection just drops
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    wait_for(lambda: server.active_reads == 0)
    received = BitMap(json.loads(out.read_text()))
    recorded = gateway.queries.run_rows("killed", gateway.queries.dataset("events").version_id)
    whole = ids(do_get(server, token, dataset="events", run_id="killed-whole"))
    assert received and received <= recorded < whole


def test_stopping_with_a_stalled_client_records_the_read_as_interrupted(
    gateway: Gateway, token: str
) -> None:
    load_small_demo(gateway)
    load_events(gateway)
    server = FlightServer(gateway, "127.0.0.1", 0)
    with flight.connect(server.location) as client:
        stream = client.do_get(ticket(dataset="events", run_id="stalled"), options(token))
        received = ids(pa.Table.from_batches([stream.read_chunk().data]))
        # The client neither reads on nor cancels: its call holds gRPC's shutdown.
        assert server.stop(timeout=1) is False
        recorded = gateway.queries.run_rows("stalled", gateway.queries.dataset("events").version_id)
        assert received <= recorded
        ends = entries(gateway)
        end = [e for e in ends if e["kind"] == "read.end" and e["data"]["run_id"] == "stalled"]
        assert end[-1]["data"]["state"] == "interrupted"
        assert end[-1]["data"]["rows"] == len(recorded)
        stream.cancel()
    wait_for(lambda: server.active_reads == 0)


# -- the subject lookup over Flight reads -----------------------------------------------------


def test_subject_lookup_finds_the_runs_that_streamed_a_subjects_rows(
    gateway: Gateway, server: FlightServer, token: str
) -> None:
    shard0 = do_get(server, token, dataset="events", run_id="lookup-0", shard=[0, 2])
    do_get(server, token, dataset="events", run_id="lookup-1", shard=[1, 2])
    info = gateway.queries.dataset("events")
    table = pa.parquet.read_table(info.path, columns=["user_id", ROW_ID])
    row = ids(shard0).min()
    user = table.filter(pc.equal(table.column(ROW_ID), row)).column("user_id")[0].as_py()
    user_rows = ids(table.filter(pc.equal(table.column("user_id"), user)))
    found = {r.run.id: r.reads[0].rows for r in gateway.queries.runs_for_subject(user)}
    for run_id in ("lookup-0", "lookup-1"):
        hit = gateway.queries.run_rows(run_id, info.version_id) & user_rows
        assert found.get(run_id, 0) == len(hit)
    assert found["lookup-0"] >= 1


# -- govern serve ---------------------------------------------------------------------------


def test_govern_serve_starts_flight_on_its_port_and_stops_cleanly(tmp_path: Path) -> None:
    govern = str(Path(sys.executable).with_name("govern"))
    env = {
        **os.environ,
        "GOVERN_HOME": str(tmp_path / "home"),
        "GOVERN_CONFIG": str(tmp_path / "none.toml"),
        "GOVERN_CHAIN_BACKEND": "none",
    }
    env.pop("GOVERN_DATABASE_URL", None)

    def run(*args: str) -> str:
        r = subprocess.run(
            [govern, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    run("db", "upgrade")
    run("demo", "load", "--scale", "0.02")
    token = run("token", "create", "--subject", "demo-trainer", "--role", "trainer").strip()
    port, flight_port = free_port(), free_port()
    proc = subprocess.Popen(
        [govern, "serve", "--port", str(port), "--flight-port", str(flight_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        location = f"grpc://127.0.0.1:{flight_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with flight.connect(location) as client:
                    t = json.dumps(
                        {"dataset": "code_corpus", "purpose": "training", "run_id": "cli"}
                    )
                    table = client.do_get(flight.Ticket(t.encode()), options(token)).read_all()
                break
            except flight.FlightUnavailableError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "Flight did not come up"
                time.sleep(0.3)
        assert table.num_rows > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert f"Arrow Flight on grpc://127.0.0.1:{flight_port}" in stderr
