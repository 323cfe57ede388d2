from __future__ import annotations

import json

import jwt
import pyarrow.flight as flight
import pytest

from govern.flight.auth import BearerAuthFactory, CallerMiddleware
from govern.gateway import Gateway
from tests.conftest import TEST_ACTOR


def _start(factory: BearerAuthFactory, headers: dict[str, list[str]]) -> CallerMiddleware:
    return factory.start_call(None, headers)


def _refused(factory: BearerAuthFactory, headers: dict[str, list[str]]) -> dict[str, object]:
    with pytest.raises(flight.FlightUnauthenticatedError) as info:
        _start(factory, headers)
    body: dict[str, object] = json.loads(str(info.value))
    assert body["error"] == "unauthenticated"
    return body


def test_a_valid_bearer_token_yields_the_caller(sqlite_gateway: Gateway) -> None:
    sqlite_gateway.commands.put_principal("alice", ["trainer"], {"region": "eu"}, TEST_ACTOR)
    token = sqlite_gateway.commands.issue_token("alice", "trainer", TEST_ACTOR).token
    factory = BearerAuthFactory(sqlite_gateway.decider.authenticate)
    middleware = _start(factory, {"authorization": [f"Bearer {token}"]})
    assert (middleware.caller.id, middleware.caller.role) == ("alice", "trainer")
    # The scheme is case-insensitive, as in HTTP.
    assert _start(factory, {"authorization": [f"bearer {token}"]}).caller.id == "alice"


def test_missing_malformed_forged_and_revoked_tokens_are_unauthenticated(
    sqlite_gateway: Gateway,
) -> None:
    sqlite_gateway.commands.put_principal("alice", ["trainer"], {}, TEST_ACTOR)
    token = sqlite_gateway.commands.issue_token("alice", "trainer", TEST_ACTOR).token
    factory = BearerAuthFactory(sqlite_gateway.decider.authenticate)
    assert _refused(factory, {})["details"] == {"reason": "missing"}
    _refused(factory, {"authorization": [token]})  # no scheme
    _refused(factory, {"authorization": ["Basic dXNlcjpwYXNz"]})
    _refused(factory, {"authorization": [f"Bearer {token}", f"Bearer {token}"]})
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-key-" * 4, algorithm="HS256")
    assert _refused(factory, {"authorization": [f"Bearer {forged}"]})["details"] == {
        "reason": "invalid"
    }
    sqlite_gateway.commands.revoke_token(str(claims["jti"]), TEST_ACTOR)
    assert _refused(factory, {"authorization": [f"Bearer {token}"]})["details"] == {
        "reason": "revoked"
    }
