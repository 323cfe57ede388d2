"""Every change is an event (invariant 7), checked from the outside, on SQLite and PostgreSQL.

The routes and CLI commands are enumerated from the FastAPI app and the Typer app, not listed by
hand: a route or command that is in neither table below fails ``test_the_tables_cover_*``, so a
new one cannot go untested. Each writing route and command is then run once and must add
exactly one log entry of its declared kind that names the caller as actor and the changed
object; each reading one must add none. With the log made unwritable (a real trigger in the
store refusing new entries), every writing route answers 503 in the error shape and leaves the
store and the dataset files exactly as they were.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import jwt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from govern.api import create_app
from govern.auth import Caller
from govern.cli.main import app as cli_app
from govern.demo import load_demo
from govern.gateway import Gateway, ReadRequest
from govern.ledger.canonical import parse_leaf
from govern.settings import Settings, load_settings
from govern.store import Database
from govern.store.migrate import upgrade
from govern.store.models import Base, LedgerEntry
from govern.unlearning.recipes import RecipeBody
from tests.conftest import MODEL_CACHE, TEST_ACTOR, auth, raw_store
from tests.unit.quality.planted import measurements, with_column

CLI_ACTOR = "cli:auditor-of-tests"


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def with_email(table: pa.Table) -> pa.Table:
    # A column the detector tags as e-mail, so there is a proposal to confirm.
    emails = [f"patient{i}@clinic-{i % 7}.org" for i in range(table.num_rows)]
    return table.append_column("contact", pa.array(emails))


@dataclass
class World:
    """A gateway with the demo loaded, its REST app, and tokens for each demo role."""

    settings: Settings
    gateway: Gateway
    client: TestClient
    tokens: dict[str, str]
    callers: dict[str, Caller]
    scratch: Path
    app: FastAPI
    notes: dict[str, Any] = field(default_factory=dict)

    def log_size(self) -> int:
        return self.gateway.queries.log_size()

    def entries_since(self, start: int) -> list[dict[str, Any]]:
        views = self.gateway.queries.ledger_entries(self.gateway.operator, start=start, limit=1000)
        return [v.entry for v in views]

    def token(self, role: str) -> dict[str, str]:
        return auth(self.tokens[role])


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    settings = load_settings(
        home=tmp_path / "home",
        database_url=database_url,
        config=tmp_path / "none.toml",
        llm_cache_dir=MODEL_CACHE,
        llm_backend="none",
        jobs_backend="none",
        erasure_rewrite=False,
        cli_actor=CLI_ACTOR,
    )
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings)
    load_demo(gateway, scale=0.02)
    tokens, callers = {}, {}
    for role in ("admin", "steward", "auditor", "compliance", "trainer"):
        issued = gateway.commands.issue_token(f"demo-{role}", role, TEST_ACTOR)
        tokens[role] = issued.token
        callers[role] = gateway.decider.authenticate(issued.token)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    app = create_app(gateway, close_on_shutdown=False)
    with TestClient(app) as client:
        yield World(settings, gateway, client, tokens, callers, scratch, app)
    gateway.close()


# -- what each writing route needs, and what it must log ------------------------------------------


@dataclass(frozen=True)
class Expect:
    kind: str
    object: str
    actor: str


Act = Callable[[World], tuple[Any, Expect]]
Prepare = Callable[[World], None]


def _nothing(w: World) -> None:
    return None


def _subject_of_first_row(w: World, dataset: str) -> str:
    info = w.gateway.queries.dataset(dataset)
    con = duckdb.connect()
    try:
        rows = con.sql(
            f"SELECT CAST({info.subject_column} AS VARCHAR) FROM read_parquet(?) LIMIT 1",
            params=[str(info.path)],
        ).fetchall()
    finally:
        con.close()
    return str(rows[0][0])


def _recipe() -> RecipeBody:
    return RecipeBody(
        trainer="examples/train_reference.py",
        datasets=[{"name": "patient_notes", "version": 1}],  # type: ignore[list-item]
        purpose="training",
        output="models/run-erase.pt",
    )


def _prepare_job(w: World) -> None:
    """A training run that read patient_notes, with a recipe, and an erasure request for a
    subject it read: one retrain job, pending (no backend runs it here)."""
    trainer = w.callers["trainer"]
    read = w.gateway.reads.open(
        trainer, ReadRequest(dataset="patient_notes", purpose="training", run_id="run-erase")
    )
    for _ in read.batches():
        pass
    w.gateway.commands.put_recipe(trainer, "run-erase", _recipe())
    subject = _subject_of_first_row(w, "patient_notes")
    info = w.gateway.commands.request_erasure(subject, None, "gdpr-art17", TEST_ACTOR)
    (job,) = w.gateway.queries.jobs(info.id)
    w.notes["job"] = job.id


def _prepare_cancelled_job(w: World) -> None:
    _prepare_job(w)
    w.gateway.commands.cancel_job(w.notes["job"], TEST_ACTOR)


def _prepare_quarantined(w: World) -> None:
    w.gateway.commands.ingest(
        "vitals",
        _file(w, "v1.parquet", parquet(measurements(200))),
        "patient_id",
        TEST_ACTOR,
        unique_columns=["reading_id"],
    )
    t = measurements(200)
    ids = t.column("reading_id").to_pylist()
    ids[1] = ids[0]
    info = w.gateway.commands.ingest(
        "vitals",
        _file(w, "v2.parquet", parquet(with_column(t, "reading_id", ids))),
        "patient_id",
        TEST_ACTOR,
    ).info
    assert info.state == "quarantined"


def _prepare_open_review(w: World) -> None:
    info = w.gateway.commands.assess(
        "patient_notes", "training", None, {"description": "notes used to train"}, TEST_ACTOR
    )
    open_reviews = [r for r in info.reviews if r.state == "open"]
    assert open_reviews, "an assessment without a model leaves reviews open"
    w.notes["review"] = open_reviews[0].id


def _prepare_principal(w: World) -> None:
    w.gateway.commands.put_principal("carol", ["trainer"], {"region": "eu"}, TEST_ACTOR)


def _prepare_token(w: World) -> None:
    issued = w.gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR)
    w.notes["jti"] = issued.jti


def _file(w: World, name: str, data: bytes) -> Path:
    path = w.scratch / name
    path.write_bytes(data)
    return path


def _upload(w: World) -> tuple[Any, Expect]:
    r = w.client.post(
        "/v1/datasets",
        headers=w.token("steward"),
        data={"name": "visits", "subject_column": "patient_id"},
        files={"file": ("visits.parquet", parquet(measurements(150)), "application/x-parquet")},
    )
    return r, Expect("dataset.version", "dataset:visits/v1", "demo-steward")


def _accept(w: World) -> tuple[Any, Expect]:
    r = w.client.post("/v1/datasets/vitals/versions/2/accept", headers=w.token("steward"))
    return r, Expect("dataset.accept", "dataset:vitals/v2", "demo-steward")


def _suite(w: World) -> tuple[Any, Expect]:
    suite = w.client.get("/v1/datasets/vitals/suite", headers=w.token("steward")).json()
    r = w.client.put(
        "/v1/datasets/vitals/suite",
        headers=w.token("steward"),
        json={"expectations": suite["expectations"][:2]},
    )
    return r, Expect("dataset.suite", "dataset:vitals", "demo-steward")


def _tags(w: World) -> tuple[Any, Expect]:
    r = w.client.put(
        "/v1/datasets/patient_notes/columns/note/tags",
        headers=w.token("steward"),
        json={"tags": ["text.free"]},
    )
    return r, Expect("dataset.tags", "dataset:patient_notes", "demo-steward")


_DECISION = {"action": "read", "resource": {"dataset": "patient_notes"}, "context": {}}


def _decide(w: World) -> tuple[Any, Expect]:
    body = {**_DECISION, "context": {"purpose": "training"}}
    r = w.client.post("/v1/decisions", headers=w.token("trainer"), json=body)
    return r, Expect("decision", "dataset:patient_notes", "demo-trainer")


def _decide_batch(w: World) -> tuple[Any, Expect]:
    body = {"requests": [{**_DECISION, "context": {"purpose": "training"}}]}
    r = w.client.post("/v1/decisions/batch", headers=w.token("trainer"), json=body)
    return r, Expect("decision", "dataset:patient_notes", "demo-trainer")


def _erase(w: World) -> tuple[Any, Expect]:
    subject = _subject_of_first_row(w, "chat_logs")
    r = w.client.post(
        "/v1/erasure-requests",
        headers=w.token("compliance"),
        json={"subject_id": subject, "datasets": None, "legal_basis": "gdpr-art17"},
    )
    rid = r.json().get("id", "?") if r.status_code < 300 else "?"
    return r, Expect("erasure.request", f"erasure:{rid}", "demo-compliance")


def _put_policy(w: World) -> tuple[Any, Expect]:
    current = w.client.get("/v1/policies", headers=w.token("steward")).json()
    r = w.client.put(
        "/v1/policies", headers=w.token("steward"), json={"rules": current["rules"][:-1]}
    )
    version = r.json().get("version") if r.status_code < 300 else "?"
    return r, Expect("policy.put", f"policy:{version}", "demo-steward")


def _put_principal(w: World) -> tuple[Any, Expect]:
    r = w.client.put(
        "/v1/principals/dave",
        headers=w.token("admin"),
        json={"roles": ["trainer"], "attributes": {"region": "us"}},
    )
    return r, Expect("principal.put", "principal:dave", "demo-admin")


def _disable_principal(w: World) -> tuple[Any, Expect]:
    r = w.client.delete("/v1/principals/carol", headers=w.token("admin"))
    return r, Expect("principal.disable", "principal:carol", "demo-admin")


def _issue(w: World) -> tuple[Any, Expect]:
    r = w.client.post(
        "/v1/tokens", headers=w.token("admin"), json={"subject": "demo-trainer", "role": "trainer"}
    )
    jti = "?"
    if r.status_code < 300:
        jti = jwt.decode(r.json()["token"], options={"verify_signature": False})["jti"]
    return r, Expect("token.issue", f"token:{jti}", "demo-admin")


def _revoke(w: World) -> tuple[Any, Expect]:
    jti = w.notes["jti"]
    r = w.client.delete(f"/v1/tokens/{jti}", headers=w.token("admin"))
    return r, Expect("token.revoke", f"token:{jti}", "demo-admin")


def _recipe_route(w: World) -> tuple[Any, Expect]:
    r = w.client.put(
        "/v1/runs/run-recipe/recipe",
        headers=w.token("trainer"),
        json=_recipe().model_dump(mode="json", exclude_none=True),
    )
    return r, Expect("run.recipe", "run:run-recipe", "demo-trainer")


def _assess(w: World) -> tuple[Any, Expect]:
    r = w.client.post(
        "/v1/compliance/assessments",
        headers=w.token("compliance"),
        json={"dataset": "patient_notes", "purpose": "training", "facts": {"consent": "given"}},
    )
    aid = r.json().get("id", "?") if r.status_code < 300 else "?"
    return r, Expect("compliance.assessment", f"assessment:{aid}", "demo-compliance")


def _decide_review(w: World) -> tuple[Any, Expect]:
    rid = w.notes["review"]
    r = w.client.post(
        f"/v1/reviews/{rid}",
        headers=w.token("compliance"),
        json={"verdict": "compliant", "note": "consent forms checked"},
    )
    return r, Expect("compliance.review", f"review:{rid}", "demo-compliance")


def _retry(w: World) -> tuple[Any, Expect]:
    job = w.notes["job"]
    r = w.client.post(f"/v1/jobs/{job}/retry", headers=w.token("admin"))
    return r, Expect("job.retry", f"job:{job}", "demo-admin")


def _cancel(w: World) -> tuple[Any, Expect]:
    job = w.notes["job"]
    r = w.client.post(f"/v1/jobs/{job}/cancel", headers=w.token("admin"))
    return r, Expect("job.cancel", f"job:{job}", "demo-admin")


# (method, path) -> (prepare, act). Every non-GET route of the app is here or in READ_ROUTES.
WRITE_ROUTES: dict[tuple[str, str], tuple[Prepare, Act]] = {
    ("POST", "/v1/datasets"): (_nothing, _upload),
    ("POST", "/v1/datasets/{name}/versions/{version}/accept"): (_prepare_quarantined, _accept),
    ("PUT", "/v1/datasets/{name}/suite"): (_prepare_quarantined, _suite),
    ("PUT", "/v1/datasets/{name}/columns/{column}/tags"): (_nothing, _tags),
    ("POST", "/v1/decisions"): (_nothing, _decide),
    ("POST", "/v1/decisions/batch"): (_nothing, _decide_batch),
    ("POST", "/v1/erasure-requests"): (_nothing, _erase),
    ("PUT", "/v1/policies"): (_nothing, _put_policy),
    ("PUT", "/v1/principals/{pid}"): (_nothing, _put_principal),
    ("DELETE", "/v1/principals/{pid}"): (_prepare_principal, _disable_principal),
    ("POST", "/v1/tokens"): (_nothing, _issue),
    ("DELETE", "/v1/tokens/{jti}"): (_prepare_token, _revoke),
    ("PUT", "/v1/runs/{run_id}/recipe"): (_nothing, _recipe_route),
    ("POST", "/v1/compliance/assessments"): (_nothing, _assess),
    ("POST", "/v1/reviews/{rid}"): (_prepare_open_review, _decide_review),
    ("POST", "/v1/jobs/{job_id}/retry"): (_prepare_cancelled_job, _retry),
    ("POST", "/v1/jobs/{job_id}/cancel"): (_prepare_job, _cancel),
}


def _simulate(w: World) -> Any:
    current = w.client.get("/v1/policies", headers=w.token("steward")).json()
    return w.client.post(
        "/v1/policies/simulate", headers=w.token("steward"), json={"rules": current["rules"]}
    )


# Non-GET routes that change nothing: they must add no entry.
READ_ROUTES: dict[tuple[str, str], Callable[[World], Any]] = {
    ("POST", "/v1/policies/simulate"): _simulate,
}


def _app_routes(w: World) -> set[tuple[str, str]]:
    """Every non-GET operation the app serves, from its OpenAPI document (the same list a
    client nobody here wrote, such as schemathesis, works from)."""
    paths = w.app.openapi()["paths"]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method not in ("get", "head", "parameters")
    }


def test_the_tables_cover_every_non_get_route(world: World) -> None:
    assert _app_routes(world) == set(WRITE_ROUTES) | set(READ_ROUTES)


def _check_one_event(w: World, start: int, expect: Expect) -> None:
    new = w.entries_since(start)
    of_kind = [e for e in new if e["kind"] == expect.kind]
    assert len(of_kind) == 1, f"{expect.kind}: {[e['kind'] for e in new]}"
    (entry,) = of_kind
    assert (entry["actor"], entry["object"]) == (expect.actor, expect.object)


@pytest.mark.parametrize("route", sorted(WRITE_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_every_writing_route_logs_exactly_one_event_naming_actor_and_object(
    world: World, route: tuple[str, str]
) -> None:
    prepare, act = WRITE_ROUTES[route]
    prepare(world)
    start = world.log_size()
    response, expect = act(world)
    assert response.status_code < 300, response.text
    _check_one_event(world, start, expect)


@pytest.mark.parametrize("route", sorted(READ_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_non_get_routes_that_change_nothing_log_nothing(
    world: World, route: tuple[str, str]
) -> None:
    start = world.log_size()
    response = READ_ROUTES[route](world)
    assert response.status_code == 200, response.text
    assert world.entries_since(start) == []


# -- the log down: refused with 503, no trace ------------------------------------------------------

_SQLITE_DOWN = (
    "CREATE TRIGGER log_down BEFORE INSERT ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'the access log is down'); END"
)
_PG_DOWN = (
    "CREATE FUNCTION log_down() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the access log is down'; END $$",
    "CREATE TRIGGER log_down BEFORE INSERT ON ledger_entries "
    "FOR EACH ROW EXECUTE FUNCTION log_down()",
)


def _log_down(db: Database, down: bool) -> None:
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(text(_SQLITE_DOWN if down else "DROP TRIGGER log_down"))
        elif down:
            for statement in _PG_DOWN:
                conn.execute(text(statement))
        else:
            conn.execute(text("DROP TRIGGER log_down ON ledger_entries"))
            conn.execute(text("DROP FUNCTION log_down()"))


def _snapshot(db: Database, home: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Every row of every table, and every file under the datasets folder."""
    tables = {}
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            tables[table.name] = sorted(repr(tuple(r)) for r in rows)
    files = sorted(str(p.relative_to(home)) for p in (home / "datasets").rglob("*"))
    return tables, files


@pytest.mark.parametrize("route", sorted(WRITE_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_a_change_asked_for_while_the_log_is_down_is_refused_and_leaves_no_trace(
    world: World, route: tuple[str, str]
) -> None:
    prepare, act = WRITE_ROUTES[route]
    prepare(world)
    db = raw_store(world.gateway)
    try:
        _log_down(db, True)
        before = _snapshot(db, world.settings.home)
        response, _ = act(world)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error"] in ("ledger_unavailable", "store_unavailable"), body
        assert set(body) == {"error", "message", "details"}
        assert _snapshot(db, world.settings.home) == before
        _log_down(db, False)
        # The same request goes through once the log is back, and is logged once.
        start = world.log_size()
        response, expect = act(world)
        assert response.status_code < 300, response.text
        _check_one_event(world, start, expect)
    finally:
        db.dispose()


# -- the CLI ---------------------------------------------------------------------------------------


def _cli_env(w: World) -> dict[str, str]:
    return {
        "GOVERN_HOME": str(w.settings.home),
        "GOVERN_DATABASE_URL": w.settings.resolved_database_url,
        "GOVERN_CONFIG": str(w.scratch / "none.toml"),
        "GOVERN_LLM_BACKEND": "none",
        "GOVERN_JOBS_BACKEND": "none",
        "GOVERN_ERASURE_REWRITE": "false",
        "GOVERN_CLI_ACTOR": CLI_ACTOR,
        "GOVERN_LLM_CACHE_DIR": str(MODEL_CACHE),
    }


def _cli(w: World, *args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env=_cli_env(w), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


CliAct = Callable[[World], list[str]]


@dataclass(frozen=True)
class CliCase:
    prepare: Prepare
    args: Callable[[World], list[str]]
    kind: str
    object: Callable[[World, str], str]


def _rules_file(w: World) -> list[str]:
    rules = w.gateway.queries.policy().rules
    path = w.scratch / "rules.csv"
    buf = io.StringIO()
    csv.writer(buf).writerows(rules[:-1])
    path.write_text(buf.getvalue())
    return ["policy", "load", str(path)]


def _suite_file(w: World) -> list[str]:
    suite = w.gateway.queries.suite("vitals").suite
    path = w.scratch / "suite.json"
    path.write_text(json.dumps({"expectations": suite["expectations"][:1]}))
    return ["dataset", "suite", "set", "vitals", str(path)]


def _upload_file(w: World) -> list[str]:
    path = _file(w, "contacts.parquet", parquet(with_email(measurements(120))))
    return ["dataset", "add", "contacts", str(path), "--subject-column", "patient_id"]


def _prepare_proposal(w: World) -> None:
    path = _file(w, "contacts.parquet", parquet(with_email(measurements(120))))
    info = w.gateway.commands.ingest("contacts", path, "patient_id", TEST_ACTOR).info
    assert any(not t.confirmed for t in info.column("contact").tag_details)


def _jti_of(output: str) -> str:
    return str(jwt.decode(output.strip(), options={"verify_signature": False})["jti"])


CLI_WRITES: dict[str, CliCase] = {
    "token create": CliCase(
        _nothing,
        lambda w: ["token", "create", "--subject", "demo-trainer", "--role", "trainer"],
        "token.issue",
        lambda w, out: f"token:{_jti_of(out)}",
    ),
    "token revoke": CliCase(
        _prepare_token,
        lambda w: ["token", "revoke", w.notes["jti"]],
        "token.revoke",
        lambda w, out: f"token:{w.notes['jti']}",
    ),
    "principal add": CliCase(
        _nothing,
        lambda w: ["principal", "add", "erin", "--role", "steward", "--attr", "region=eu"],
        "principal.put",
        lambda w, out: "principal:erin",
    ),
    "principal disable": CliCase(
        _prepare_principal,
        lambda w: ["principal", "disable", "carol"],
        "principal.disable",
        lambda w, out: "principal:carol",
    ),
    "policy load": CliCase(_nothing, _rules_file, "policy.put", lambda w, out: "policy:2"),
    "dataset add": CliCase(
        _nothing, _upload_file, "dataset.version", lambda w, out: "dataset:contacts/v1"
    ),
    "dataset accept": CliCase(
        _prepare_quarantined,
        lambda w: ["dataset", "accept", "vitals", "2"],
        "dataset.accept",
        lambda w, out: "dataset:vitals/v2",
    ),
    "dataset tags set": CliCase(
        _nothing,
        lambda w: ["dataset", "tags", "set", "patient_notes", "note", "text.free"],
        "dataset.tags",
        lambda w, out: "dataset:patient_notes",
    ),
    "dataset tags confirm": CliCase(
        _prepare_proposal,
        lambda w: ["dataset", "tags", "confirm", "contacts", "--column", "contact"],
        "dataset.tags",
        lambda w, out: "dataset:contacts",
    ),
    "dataset suite set": CliCase(
        _prepare_quarantined, _suite_file, "dataset.suite", lambda w, out: "dataset:vitals"
    ),
    "erasure request": CliCase(
        _nothing,
        lambda w: [
            "erasure",
            "request",
            "--subject",
            _subject_of_first_row(w, "chat_logs"),
            "--legal-basis",
            "gdpr-art17",
        ],
        "erasure.request",
        lambda w, out: f"erasure:{out.split(':', 1)[0].strip()}",
    ),
    "jobs retry": CliCase(
        _prepare_cancelled_job,
        lambda w: ["jobs", "retry", w.notes["job"]],
        "job.retry",
        lambda w, out: f"job:{w.notes['job']}",
    ),
    "jobs cancel": CliCase(
        _prepare_job,
        lambda w: ["jobs", "cancel", w.notes["job"]],
        "job.cancel",
        lambda w, out: f"job:{w.notes['job']}",
    ),
    "compliance check": CliCase(
        _nothing,
        lambda w: [
            "compliance",
            "check",
            "--purpose",
            "training",
            "--dataset",
            "patient_notes",
            "--fact",
            "consent=given",
        ],
        "compliance.assessment",
        lambda w, out: "assessment:" + out.split("assessment ", 1)[1].split()[0],
    ),
    "review decide": CliCase(
        _prepare_open_review,
        lambda w: ["review", "decide", w.notes["review"], "--verdict", "non_compliant"],
        "compliance.review",
        lambda w, out: f"review:{w.notes['review']}",
    ),
    "ledger anchor": CliCase(
        _nothing,
        lambda w: ["ledger", "anchor"],
        "ledger.anchor",
        lambda w, out: f"anchor:{json.loads(out)['chain_id']}/{json.loads(out)['tree_size']}",
    ),
}

# Commands that write, but more than one kind at once: what each adds, and who it names.
CLI_COMPOSITE = {"demo load"}

# Commands that change no state, with why they are not run here where that applies.
CLI_READS: dict[str, str | None] = {
    "dataset list": None,
    "dataset show": None,
    "dataset versions": None,
    "dataset tags show": None,
    "dataset suite show": None,
    "principal list": None,
    "policy show": None,
    "policy test": None,
    "ledger verify": None,
    "ledger proof": None,
    "ledger export": None,
    "erasure status": None,
    "erasure list": None,
    "erasure check": None,
    "jobs list": None,
    "jobs show": None,
    "compliance rules": None,
    "review list": None,
    "serve": "serves until stopped; its changes are the routes' (tested above)",
    "db upgrade": "migrates the schema, which is not state an event records",
    "model prepare": "writes a cache derived from the installed model file, not the store",
    "compliance calibrate": "writes a calibration file, not the store; needs the model",
    "compliance calibrate-prose": "writes the prose reader's trust file, not the store",
}


def _cli_commands() -> set[str]:
    found: set[str] = set()

    def walk(command: Any, prefix: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found.add(" ".join(prefix))
            return
        for name, sub in subs.items():
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(cli_app), [])
    return found


def test_the_tables_cover_every_cli_command() -> None:
    assert _cli_commands() == set(CLI_WRITES) | CLI_COMPOSITE | set(CLI_READS)


@pytest.mark.parametrize("name", sorted(CLI_WRITES))
def test_every_writing_cli_command_logs_exactly_one_event(world: World, name: str) -> None:
    case = CLI_WRITES[name]
    case.prepare(world)
    start = world.log_size()
    output = _cli(world, *case.args(world))
    new = world.entries_since(start)
    of_kind = [e for e in new if e["kind"] == case.kind]
    assert len(of_kind) == 1, f"{name}: {[e['kind'] for e in new]}"
    assert of_kind[0]["actor"] == CLI_ACTOR
    assert of_kind[0]["object"] == case.object(world, output)


def _read_args(w: World, name: str, erasure: str) -> list[str] | None:
    ds = ["patient_notes"]
    args = {
        "dataset show": ds,
        "dataset versions": ds,
        "dataset tags show": ds,
        "dataset suite show": None,
        "ledger verify": ["--no-chain"],
        "ledger proof": ["0"],
        "ledger export": [str(w.scratch / "bundle.json")],
        "erasure status": [erasure],
        "erasure check": ["--subject", "nobody"],
        "jobs show": None,
        "policy test": ["--store"],
    }
    if name in args:
        extra = args[name]
        return None if extra is None else [*name.split(), *extra]
    return name.split()


def test_cli_commands_that_change_nothing_log_nothing(world: World) -> None:
    erasure = world.gateway.commands.request_erasure("nobody", None, "gdpr-art17", TEST_ACTOR).id
    for name, skipped in sorted(CLI_READS.items()):
        if skipped is not None:
            continue
        args = _read_args(world, name, erasure)
        if args is None:
            continue  # needs an object this world lacks; its reading code is tested elsewhere
        start = world.log_size()
        result = CliRunner().invoke(cli_app, args, env=_cli_env(world), catch_exceptions=False)
        assert result.exit_code in (0, 1), f"{name}: {result.output}"
        assert world.entries_since(start) == [], name


def test_demo_load_logs_each_change_once_as_the_demo(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "fresh"
    settings = load_settings(home=home, database_url=database_url, config=tmp_path / "none.toml")
    upgrade(settings.resolved_database_url)
    env = {
        "GOVERN_HOME": str(home),
        "GOVERN_DATABASE_URL": settings.resolved_database_url,
        "GOVERN_CONFIG": str(tmp_path / "none.toml"),
    }
    result = CliRunner().invoke(cli_app, ["demo", "load", "--scale", "0.01"], env=env)
    assert result.exit_code == 0, result.output
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as s:
            leaves = [
                bytes(x) for x in s.scalars(select(LedgerEntry.leaf).order_by(LedgerEntry.idx))
            ]
    finally:
        db.dispose()
    entries = [parse_leaf(leaf) for leaf in leaves]
    assert {e["actor"] for e in entries} == {"demo"}
    objects = sorted((e["kind"], e["object"]) for e in entries)
    principals = ["demo-admin", "demo-auditor", "demo-compliance", "demo-steward", "demo-trainer"]
    assert objects == sorted(
        [("principal.put", f"principal:{p}") for p in principals]
        + [("policy.put", "policy:1")]
        + [
            ("dataset.version", f"dataset:{d}/v1")
            for d in ("chat_logs", "code_corpus", "patient_notes")
        ]
    )
    # Loading again changes nothing, so logs nothing.
    again = CliRunner().invoke(cli_app, ["demo", "load", "--scale", "0.01"], env=env)
    assert again.exit_code == 0, again.output
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as s:
            assert len(s.scalars(select(LedgerEntry.idx)).all()) == len(entries)
    finally:
        db.dispose()
