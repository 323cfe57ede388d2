"""No personal data in the permanent log (invariant 8), on SQLite and PostgreSQL.

The whole flow runs for real: the demo, a trainer training through Flight with the reference
trainer (its recipe registered), an upload with e-mail addresses and names, an assessment whose
description and facts name a patient, a review note that does too, erasure requests (one whose
retrain job runs to the end through the local job backend, one for a subject nobody holds).
Then every leaf of the log is searched, as raw bytes, for every subject id, e-mail address,
name and free text the flow used: none may appear. The subject survives only as a keyed
commitment, which the key holder can recompute to check the request was honoured, and the
erasable store forgets the cleartext once the request completes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from govern.api import create_app
from govern.cli.main import app as cli_app
from govern.demo import load_demo
from govern.events.commitment import Commitments
from govern.flight import FlightServer
from govern.gateway import Gateway
from govern.settings import Settings
from govern.store.migrate import upgrade
from govern.store.models import ErasureRequest, LedgerEntry
from tests.conftest import TEST_ACTOR, auth, free_port, raw_store, wait_for
from tests.reference_trainer import ROOT, reference_trainer

DESCRIPTION = (
    "Clinical notes of patient {subject}, Margarethe Vollmer-Ostrowski, reachable at "
    "margarethe.vollmer@klinik-nord.example.de, to fine-tune a triage assistant."
)
NOTE = "Called Margarethe Vollmer-Ostrowski ({subject}) on 2026-11-30; she confirmed consent."
UPLOAD_NAMES = ["Bartholomew Quennell-Ashdown", "Oriane Fitzwarren-Delacroix"]
UPLOAD_EMAILS = ["b.quennell@harbourview.example.com", "oriane.fd@maison-lumiere.example.fr"]
UPLOAD_IDS = ["C-1001", "C-1002"]
GHOST = "ghost-subject-7731"


@pytest.fixture
def serving(settings: Settings) -> Iterator[tuple[Gateway, FlightServer, TestClient]]:
    """A serving gateway (its job reconciler runs) whose jobs read from its own Flight server
    and run in the repository, with the demo loaded."""
    port = free_port()
    settings = settings.model_copy(
        update={
            "flight_port": port,
            "unlearning_workdir": ROOT,
            "jobs_backend": "local",
            "jobs_poll_seconds": 0.1,
            "llm_backend": "none",
        }
    )
    upgrade(settings.resolved_database_url)
    gateway = Gateway.open(settings, watch=True, anchor=False)
    try:
        load_demo(gateway, scale=0.02)
        server = FlightServer(gateway, "127.0.0.1", port)
        try:
            with TestClient(create_app(gateway, close_on_shutdown=False)) as client:
                yield gateway, server, client
        finally:
            assert server.stop(timeout=15)
    finally:
        gateway.close()


def _token(gateway: Gateway, pid: str, role: str) -> str:
    return gateway.commands.issue_token(pid, role, TEST_ACTOR).token


def _column(gateway: Gateway, dataset: str, column: str) -> list[str]:
    info = gateway.queries.dataset(dataset)
    con = duckdb.connect()
    try:
        rows = con.sql(
            f"SELECT DISTINCT CAST({column} AS VARCHAR) FROM read_parquet(?)",
            params=[str(info.path)],
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]


def _upload_csv(client: TestClient, steward: str) -> None:
    table = pa.table(
        {
            "customer_id": UPLOAD_IDS,
            "full_name": UPLOAD_NAMES,
            "email": UPLOAD_EMAILS,
            "spend": [120.5, 88.0],
        }
    )
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    r = client.post(
        "/v1/datasets",
        headers=auth(steward),
        data={"name": "customers", "subject_column": "customer_id"},
        files={"file": ("customers.csv", buf.getvalue(), "text/csv")},
    )
    assert r.status_code == 201, r.text


def test_the_whole_flow_leaves_no_subject_id_email_name_or_free_text_in_the_log(
    serving: tuple[Gateway, FlightServer, TestClient], tmp_path: Path
) -> None:
    gateway, server, client = serving
    steward = _token(gateway, "demo-steward", "steward")
    compliance = _token(gateway, "demo-compliance", "compliance")
    auditor = _token(gateway, "demo-auditor", "auditor")

    # A trainer trains through Flight; the reference trainer registers its recipe.
    reference_trainer().main(
        [
            "--flight-url", server.location,
            "--token", _token(gateway, "demo-trainer", "trainer"),
            "--run-id", "scan-1", "--epochs", "1", "--output", str(tmp_path / "model"),
        ]
    )  # fmt: skip
    info = gateway.queries.dataset("patient_notes")
    read_rows = gateway.queries.run_rows("scan-1", info.version_id)
    owners = {
        int(r): str(p)
        for r, p in duckdb.execute(
            "SELECT _row_id, patient_id FROM read_parquet(?)", [str(info.path)]
        ).fetchall()
    }
    subject = owners[next(iter(read_rows))]

    _upload_csv(client, steward)

    # An assessment whose description and facts name the patient, and a note that does too.
    r = client.post(
        "/v1/compliance/assessments",
        headers=auth(compliance),
        json={
            "dataset": "patient_notes",
            "purpose": "training",
            "facts": {"description": DESCRIPTION.format(subject=subject), "consent": "given"},
        },
    )
    assert r.status_code == 201, r.text
    review = next(v["review"]["id"] for v in r.json()["verdicts"] if v["review"])
    r = client.post(
        f"/v1/reviews/{review}",
        headers=auth(compliance),
        json={"verdict": "compliant", "note": NOTE.format(subject=subject)},
    )
    assert r.status_code == 200, r.text

    # Erasure: the patient (whose rows the run read: a retrain job runs to the end), a chat
    # user by id, and a subject nobody holds.
    chat_user = _column(gateway, "chat_logs", "user_id")[0]
    chat_emails = [
        str(e)
        for (e,) in duckdb.execute(
            "SELECT DISTINCT email FROM read_parquet(?) WHERE user_id = ?",
            [str(gateway.queries.dataset("chat_logs").path), chat_user],
        ).fetchall()
    ]
    ids = {}
    for sid in (subject, chat_user, GHOST):
        r = client.post(
            "/v1/erasure-requests",
            headers=auth(compliance),
            json={"subject_id": sid, "datasets": None, "legal_basis": "gdpr-art17"},
        )
        assert r.status_code == 202, r.text
        ids[sid] = r.json()["id"]
    first = client.get(f"/v1/erasure-requests/{ids[subject]}", headers=auth(compliance)).json()
    assert first["jobs"], "the run that read the subject's rows gets a retrain job"

    def completed() -> bool:
        body = client.get(f"/v1/erasure-requests/{ids[subject]}", headers=auth(compliance))
        return bool(body.json()["state"] == "completed")

    wait_for(completed, timeout=300)
    done = client.get(f"/v1/erasure-requests/{ids[subject]}", headers=auth(compliance)).json()
    key = Commitments(gateway.settings.commitment_key_bytes)
    assert done["subject_id"] is None  # the erasable store forgot it
    assert done["subject_commitment"] == key.subject(subject)
    ghost = client.get(f"/v1/erasure-requests/{ids[GHOST]}", headers=auth(compliance)).json()
    assert (ghost["state"], ghost["excluded_rows"], ghost["subject_id"]) == ("completed", 0, None)

    # Reads over REST that name a subject (they are not logged, and must not be).
    r = client.get("/v1/runs", headers=auth(auditor), params={"subject_id": chat_user})
    assert r.status_code == 200, r.text

    # Every leaf, as bytes, against every personal datum the flow used.
    db = raw_store(gateway)
    try:
        with db.session() as s:
            leaves = [bytes(x) for x in s.scalars(select(LedgerEntry.leaf))]
            stored = {
                r.id: (r.subject_id, r.subject_commitment)
                for r in s.scalars(select(ErasureRequest))
            }
    finally:
        db.dispose()
    forbidden = {
        subject,
        chat_user,
        GHOST,
        "Margarethe",
        "Vollmer",
        "margarethe.vollmer@klinik-nord.example.de",
        DESCRIPTION.format(subject=subject)[:40],
        NOTE.format(subject=subject)[:40],
        *UPLOAD_NAMES,
        *UPLOAD_EMAILS,
        *UPLOAD_IDS,
        *chat_emails,
    }
    # The demo's own identifiers: every patient and chat user id, and every e-mail address.
    forbidden |= set(_column(gateway, "patient_notes", "patient_id"))
    forbidden |= set(_column(gateway, "chat_logs", "user_id"))
    forbidden |= set(_column(gateway, "chat_logs", "email"))
    forbidden |= set(_column(gateway, "code_corpus", "author_email"))
    blob = b"\n".join(leaves)
    hits = sorted(f for f in forbidden if f.encode() in blob)
    kinds = {b.split(b'"kind":"', 1)[1].split(b'"', 1)[0].decode() for b in leaves}
    assert kinds >= {
        "principal.put", "policy.put", "dataset.version", "dataset.quality", "token.issue",
        "decision", "read", "read.end", "run.recipe", "compliance.assessment",
        "compliance.review", "erasure.request", "job.enqueue", "job.attempt", "job.submit",
        "job.end", "token.revoke", "erasure.complete",
    }  # fmt: skip
    assert hits == []
    # The commitment is there, so the key holder can find the request.
    assert key.subject(subject).encode() in blob
    # Only requests with work left keep the id in clear; these all completed.
    assert all(sid is None for sid, _ in stored.values())
    assert {c for _, c in stored.values()} == {key.subject(s) for s in ids}

    # The auditor's check, with the key: the request and its completion, by log entry.
    env = {
        "GOVERN_HOME": str(gateway.settings.home),
        "GOVERN_DATABASE_URL": gateway.settings.resolved_database_url,
        "GOVERN_CONFIG": str(tmp_path / "none.toml"),
        "GOVERN_LLM_BACKEND": "none",
    }
    result = CliRunner().invoke(cli_app, ["erasure", "check", "--subject", subject], env=env)
    assert result.exit_code == 0, result.output
    assert f"erasure.request {ids[subject]}" in result.stdout
    assert f"erasure.complete {ids[subject]}" in result.stdout
    nobody = CliRunner().invoke(cli_app, ["erasure", "check", "--subject", "never-asked"], env=env)
    assert nobody.exit_code == 1
