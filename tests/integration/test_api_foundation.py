"""The REST foundation over both store backends: auth, errors, health, datasets."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pyarrow as pa
from fastapi.testclient import TestClient

from govern.api import create_app
from govern.gateway import Gateway
from govern.settings import load_settings
from tests.conftest import TEST_ACTOR, TokenFactory, auth


def _register(gateway: Gateway) -> None:
    t = pa.table({"uid": ["a", "b"], "email": ["a@x.org", "b@x.org"], "n": [1, 2]})
    gateway.commands.register_dataset("people", t, "uid", TEST_ACTOR, tags={"email": ["pii.email"]})


def test_health_readiness_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    # The model is detail, not a condition of readiness: it loads on first use.
    model = ready["language_model"]
    assert model["backend"] == "local" and model["name"].startswith("local:SmolLM2")
    spec = client.get("/openapi.json").json()
    assert "/v1/datasets" in spec["paths"]
    metrics = client.get("/metrics").text
    assert 'govern_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in metrics
    state = f'govern_language_model_state{{backend="local",state="{model["state"]}"}} 1.0'
    assert state in metrics
    assert f"govern_language_model_ready {1.0 if model['state'] == 'ready' else 0.0}" in metrics


def test_datasets_list_matches_the_fixed_shape(
    client: TestClient, gateway: Gateway, token_for: TokenFactory
) -> None:
    _register(gateway)
    body = client.get("/v1/datasets", headers=auth(token_for("t", "trainer"))).json()
    assert body == [
        {
            "name": "people",
            "version": 1,
            "columns": [
                {"name": "uid", "type": "VARCHAR", "tags": []},
                {"name": "email", "type": "VARCHAR", "tags": ["pii.email"]},
                {"name": "n", "type": "BIGINT", "tags": []},
            ],
            "subject_column": "uid",
            "row_count": 2,
            "description": "",
        }
    ]


def test_unknown_dataset_is_a_404_in_the_error_shape(
    client: TestClient, token_for: TokenFactory
) -> None:
    r = client.get("/v1/datasets/nope", headers=auth(token_for("t", "trainer")))
    assert r.status_code == 404
    assert r.json() == {
        "error": "dataset_not_found",
        "message": "no dataset 'nope'",
        "details": {"dataset": "nope"},
    }
    r = client.get("/v1/datasets/..%2F..%2Fetc", headers=auth(token_for("t2", "trainer")))
    assert r.status_code in (400, 404)
    assert set(r.json()) == {"error", "message", "details"}


def test_missing_bad_and_expired_tokens_are_401(
    client: TestClient, gateway: Gateway, token_for: TokenFactory
) -> None:
    assert client.get("/v1/datasets").status_code == 401
    r = client.get("/v1/datasets", headers=auth("not.a.token"))
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"
    good = token_for("t", "trainer")
    claims = jwt.decode(good, options={"verify_signature": False})
    claims["exp"] = claims["iat"] - 10
    expired = jwt.encode(claims, gateway.settings.token_secret, algorithm="HS256")
    r = client.get("/v1/datasets", headers=auth(expired))
    assert r.status_code == 401 and r.json()["details"] == {"reason": "expired"}


def test_roles_are_checked_per_route(client: TestClient, token_for: TokenFactory) -> None:
    trainer = token_for("t", "trainer")
    r = client.put("/v1/principals/x", json={"roles": ["admin"]}, headers=auth(trainer))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    admin = token_for("a", "admin")
    r = client.put(
        "/v1/principals/x",
        json={"roles": ["trainer"], "attributes": {"region": "eu"}},
        headers=auth(admin),
    )
    assert r.status_code == 200 and r.json()["attributes"] == {"region": "eu"}
    r = client.post("/v1/tokens", json={"subject": "x", "role": "trainer"}, headers=auth(admin))
    assert r.status_code == 201
    me = client.get("/v1/whoami", headers=auth(r.json()["token"])).json()
    assert me["id"] == "x" and me["roles"] == ["trainer"]


def test_malformed_and_oversized_bodies_are_refused_without_side_effects(
    client: TestClient, gateway: Gateway, token_for: TokenFactory
) -> None:
    admin = auth(token_for("a", "admin"))
    headers = {**admin, "Content-Type": "application/json"}
    r = client.put("/v1/principals/x", content=b'{"roles": [', headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "malformed_json"
    big = json.dumps({"roles": ["trainer"], "display_name": "x" * (2 << 20)})
    r = client.put("/v1/principals/x", content=big, headers=headers)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = client.put("/v1/principals/x", json={"roles": ["wizard"]}, headers=admin)
    assert r.status_code == 422
    assert [p.id for p in gateway.queries.principals()] == ["a"]


def test_a_store_that_is_down_answers_503(tmp_path: Path) -> None:
    # Nothing listens on port 1: every store call fails to connect.
    s = load_settings(
        home=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
        config=tmp_path / "none.toml",
    )
    gateway = Gateway.open(s)
    with TestClient(create_app(gateway)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
        r = c.get("/v1/datasets", headers=auth("x.y.z"))
        assert r.status_code in (401, 503)
        # A well-formed token must still not get through while the store cannot vouch for it.
        forged = jwt.encode(
            {"iss": "govern", "sub": "a", "role": "admin", "jti": "j", "iat": 1, "exp": 2**40},
            s.token_secret,
            algorithm="HS256",
        )
        r = c.get("/v1/datasets", headers=auth(forged))
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
