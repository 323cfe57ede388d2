"""Token forgery against the running gateway, on REST and on Flight: every forged, stale or
revoked token is a 401 with a machine-readable reason, logs nothing, and reads no row."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pyarrow.flight as flight
import pytest

from govern.flight import FlightServer
from govern.gateway import Gateway
from tests.conftest import TEST_ACTOR
from tests.security.scene import Scene, flight_options, flight_refusal, refusal

_DECISION = {
    "action": "read",
    "resource": {"dataset": "patient_notes"},
    "context": {"purpose": "training"},
}
_TICKET = flight.Ticket(
    json.dumps({"dataset": "patient_notes", "purpose": "training", "run_id": "sec-1"}).encode()
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _unsigned(claims: dict[str, Any], alg: str) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    """Signed by hand: PyJWT refuses to sign with an empty key, an attacker does not."""
    signing = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
    signing += _b64(json.dumps(claims).encode())
    mac = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(mac)}"


def _refused_everywhere(scene: Scene, server: FlightServer, token: str) -> str:
    """The token is refused by REST (two routes) and by Flight; returns the reason."""
    headers = {"Authorization": f"Bearer {token}"}
    reasons: set[str] = set()
    for response in (
        scene.client.post("/v1/decisions", json=_DECISION, headers=headers),
        scene.client.get("/v1/datasets", headers=headers),
    ):
        body = refusal(response, 401)
        assert body["error"] == "unauthenticated"
        reasons.add(body["details"]["reason"])
    with flight.connect(server.location) as client, pytest.raises(flight.FlightError) as info:
        client.do_get(_TICKET, flight_options(token)).read_all()
    assert isinstance(info.value, flight.FlightUnauthenticatedError)
    body = flight_refusal(info.value)
    assert body["error"] == "unauthenticated"
    reasons.add(body["details"]["reason"])
    assert len(reasons) == 1, reasons
    return reasons.pop()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_alg_none_tokens_are_refused(
    scene: Scene, flight_of: FlightServer, alg: str
) -> None:
    forged = _unsigned(_claims(scene.tokens["trainer"]), alg)
    with scene.unchanged():
        assert _refused_everywhere(scene, flight_of, forged) == "invalid"


def test_tokens_signed_with_another_key_are_refused(scene: Scene, flight_of: FlightServer) -> None:
    claims = _claims(scene.tokens["admin"])
    with scene.unchanged():
        for key in (b"k" * 48, b"", scene.tokens["admin"].encode()):
            assert _refused_everywhere(scene, flight_of, _hs256(claims, key)) == "invalid"


def test_the_real_key_under_another_algorithm_is_refused(
    scene: Scene, flight_of: FlightServer
) -> None:
    """Only HS256 is accepted: a token signed with the deployment's own key under HS384 or
    HS512 (algorithm confusion) is still a forgery."""
    secret = scene.gateway.settings.token_secret
    claims = _claims(scene.tokens["trainer"])
    with scene.unchanged():
        for alg in ("HS384", "HS512"):
            forged = jwt.encode(claims, secret, algorithm=alg)
            assert _refused_everywhere(scene, flight_of, forged) == "invalid"


def test_expired_tokens_are_refused_even_when_validly_signed(
    scene: Scene, flight_of: FlightServer
) -> None:
    secret = scene.gateway.settings.token_secret
    claims = _claims(scene.tokens["trainer"]) | {"exp": int(time.time()) - 5}
    with scene.unchanged():
        assert _refused_everywhere(scene, flight_of, jwt.encode(claims, secret)) == "expired"


def test_claims_rewritten_under_the_real_key_do_not_escalate(
    scene: Scene, flight_of: FlightServer
) -> None:
    """Even a holder of the signing key cannot mint authority the store did not issue: the
    stored token row pins subject and role, and an unknown token id is refused."""
    secret = scene.gateway.settings.token_secret
    trainer = _claims(scene.tokens["trainer"])
    forgeries = [
        trainer | {"role": "admin"},
        trainer | {"sub": "demo-admin"},
        trainer | {"sub": "demo-admin", "role": "admin"},
        trainer | {"jti": "0" * 32},  # never issued
        {k: v for k, v in trainer.items() if k != "jti"},  # no token id at all
        trainer | {"iss": "someone-else"},
    ]
    with scene.unchanged():
        reasons = [_refused_everywhere(scene, flight_of, jwt.encode(c, secret)) for c in forgeries]
    assert reasons == ["invalid", "invalid", "invalid", "revoked", "invalid", "invalid"]


def test_a_revoked_token_replayed_at_once_is_refused(scene: Scene, flight_of: FlightServer) -> None:
    """The token is used first, so every cache on the way holds it as good; the revocation
    must reach REST and Flight before the revoking call returns."""
    token = scene.gateway.commands.issue_token("demo-trainer", "trainer", TEST_ACTOR).token
    ok = scene.client.post(
        "/v1/decisions", json=_DECISION, headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status_code == 200 and ok.json()["decision"] == "allow"
    with flight.connect(flight_of.location) as client:
        assert client.do_get(_TICKET, flight_options(token)).read_all().num_rows > 0
    jti = _claims(token)["jti"]
    revoked = scene.client.delete(f"/v1/tokens/{jti}", headers=scene.headers("admin"))
    assert revoked.status_code == 204, revoked.text
    with scene.unchanged():
        for _ in range(3):
            assert _refused_everywhere(scene, flight_of, token) == "revoked"


def test_tokens_of_a_disabled_principal_are_refused(scene: Scene, flight_of: FlightServer) -> None:
    token = scene.tokens["trainer"]
    gone = scene.client.delete("/v1/principals/demo-trainer", headers=scene.headers("admin"))
    assert gone.status_code == 204, gone.text
    with scene.unchanged():
        assert _refused_everywhere(scene, flight_of, token) == "revoked"


def test_a_revocation_made_by_another_replica_is_honoured(any_scene: Scene) -> None:
    """Two gateways over one store (SQLite file or PostgreSQL): one revokes, the other, which
    has just accepted the token, refuses it on its next call."""
    token = any_scene.tokens["trainer"]
    headers = {"Authorization": f"Bearer {token}"}
    assert any_scene.client.get("/v1/datasets", headers=headers).status_code == 200
    other = Gateway.open(any_scene.gateway.settings)
    try:
        other.commands.revoke_token(_claims(token)["jti"], TEST_ACTOR)
    finally:
        other.close()
    with any_scene.unchanged():
        body = refusal(any_scene.client.get("/v1/datasets", headers=headers), 401)
        assert body["details"] == {"reason": "revoked"}
        body = refusal(any_scene.client.post("/v1/decisions", json=_DECISION, headers=headers), 401)
        assert body["details"] == {"reason": "revoked"}


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic ZGVtby1hZG1pbjpwdw==",
        "Token abc",
        "Bearer a.b.c",
        "Bearer " + "A" * 9000,
        "Bearer \u00e9t\u00e9",
    ],
)
def test_malformed_authorization_headers_are_refused(scene: Scene, header: str) -> None:
    with scene.unchanged():
        response = scene.client.get("/v1/datasets", headers={b"Authorization": header.encode()})
        assert refusal(response, 401)["error"] == "unauthenticated"
