"""The jobs REST routes over both stores: reviewers read jobs, only admins retry or cancel,
and every answer has the one error shape."""

from __future__ import annotations

from fastapi.testclient import TestClient

from govern.gateway import Gateway
from tests.conftest import TEST_ACTOR, TokenFactory, auth
from tests.unit.jobs.conftest import add_request, python_spec


def test_jobs_can_be_listed_read_cancelled_and_retried_by_the_right_roles(
    gateway: Gateway, client: TestClient, token_for: TokenFactory
) -> None:
    gateway.commands.put_principal("trainer-1", ["trainer"], {}, TEST_ACTOR)
    rid = add_request(gateway, "subject-api")
    (job_id,) = gateway.commands.enqueue_jobs(
        rid, [python_spec("import time; time.sleep(60)", gpus=0)], TEST_ACTOR
    )
    gateway.run_jobs_once()
    admin = auth(token_for("ops", "admin"))
    auditor = auth(token_for("aud", "auditor"))
    trainer = auth(token_for("tr", "trainer"))

    listed = client.get("/v1/jobs", headers=auditor)
    assert listed.status_code == 200
    (shown,) = listed.json()
    assert (shown["id"], shown["state"], shown["kind"]) == (job_id, "submitted", "retrain")
    assert shown["request_id"] == rid and shown["principal_id"] == "trainer-1"
    assert shown["resources"] == {"gpus": 0, "cpus": 1.0, "memory_mb": 2048}
    assert client.get("/v1/jobs?request=er-0123456789abcdef01234567", headers=auditor).json() == []
    assert client.get(f"/v1/jobs/{job_id}", headers=auditor).json()["attempts"] == 1
    missing = client.get("/v1/jobs/job-nope", headers=auditor)
    assert missing.status_code == 404 and missing.json()["error"] == "job_not_found"
    assert client.get("/v1/jobs", headers=trainer).status_code == 403
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auditor).status_code == 403

    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    officer = auth(token_for("off", "compliance"))
    request = client.get(f"/v1/erasure-requests/{rid}", headers=officer).json()
    assert request["state"] == "failed" and "cancelled by ops" in request["message"]

    retried = client.post(f"/v1/jobs/{job_id}/retry", headers=admin)
    assert retried.status_code == 200
    assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
    assert client.post(f"/v1/jobs/{job_id}/retry", headers=admin).status_code == 409
    logged = gateway.queries.ledger_entries(
        gateway.operator, limit=1000, object_ref=f"job:{job_id}", actor="ops"
    )
    assert [v.entry["kind"] for v in logged] == ["job.end", "job.cancel", "job.retry"]
    assert logged[1].entry["data"] == {"id": job_id, "was": "submitted"}
    assert logged[2].entry["data"] == {"id": job_id, "was": "cancelled"}
    # The cancel also ended the token minted for the job's attempt.
    (attempt,) = gateway.queries.ledger_entries(
        gateway.operator, kind="job.attempt", object_ref=f"job:{job_id}"
    )
    jti = attempt.entry["data"]["token"]
    (revoked,) = gateway.queries.ledger_entries(
        gateway.operator, kind="token.revoke", object_ref=f"token:{jti}"
    )
    assert revoked.entry["actor"] == "ops"
    assert revoked.entry["data"] == {"jti": jti, "subject": "trainer-1"}
