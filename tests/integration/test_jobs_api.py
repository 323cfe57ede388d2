"""The jobs REST routes over both stores: reviewers read jobs, only admins retry or cancel,
and every answer has the one error shape."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from govern.gateway import Gateway
from tests.conftest import TokenFactory, auth
from tests.unit.jobs.conftest import add_request, python_spec


def test_jobs_can_be_listed_read_cancelled_and_retried_by_the_right_roles(
    gateway: Gateway, client: TestClient, token_for: TokenFactory
) -> None:
    gateway.principals.upsert("trainer-1", ["trainer"], {})
    rid = add_request(gateway, "subject-api")
    (job,) = gateway.jobs.enqueue(rid, [python_spec("import time; time.sleep(60)", gpus=0)])
    gateway.jobs.tick()
    admin = auth(token_for("ops", "admin"))
    auditor = auth(token_for("aud", "auditor"))
    trainer = auth(token_for("tr", "trainer"))

    listed = client.get("/v1/jobs", headers=auditor)
    assert listed.status_code == 200
    (shown,) = listed.json()
    assert (shown["id"], shown["state"], shown["kind"]) == (job.id, "submitted", "retrain")
    assert shown["request_id"] == rid and shown["principal_id"] == "trainer-1"
    assert shown["resources"] == {"gpus": 0, "cpus": 1.0, "memory_mb": 2048}
    assert client.get("/v1/jobs?request=er-0123456789abcdef01234567", headers=auditor).json() == []
    assert client.get(f"/v1/jobs/{job.id}", headers=auditor).json()["attempts"] == 1
    missing = client.get("/v1/jobs/job-nope", headers=auditor)
    assert missing.status_code == 404 and missing.json()["error"] == "job_not_found"
    assert client.get("/v1/jobs", headers=trainer).status_code == 403
    assert client.post(f"/v1/jobs/{job.id}/cancel", headers=auditor).status_code == 403

    cancelled = client.post(f"/v1/jobs/{job.id}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = client.post(f"/v1/jobs/{job.id}/cancel", headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    officer = auth(token_for("off", "compliance"))
    request = client.get(f"/v1/erasure-requests/{rid}", headers=officer).json()
    assert request["state"] == "failed" and "cancelled by ops" in request["message"]

    retried = client.post(f"/v1/jobs/{job.id}/retry", headers=admin)
    assert retried.status_code == 200
    assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
    assert client.post(f"/v1/jobs/{job.id}/retry", headers=admin).status_code == 409
    kinds = [json.loads(leaf)["kind"] for _, leaf in gateway.ledger.leaves(0, 1000)]
    assert "job.cancel" in kinds and "job.retry" in kinds
