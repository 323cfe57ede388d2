from __future__ import annotations

import time

import jwt
import pytest

from govern.errors import AuthError, PrincipalNotFound, ValidationError
from govern.gateway import Gateway
from tests.conftest import TEST_ACTOR


@pytest.fixture
def gw(sqlite_gateway: Gateway) -> Gateway:
    sqlite_gateway.commands.put_principal(
        "alice", ["trainer", "steward"], {"region": "eu"}, TEST_ACTOR
    )
    return sqlite_gateway


def issue(gw: Gateway, subject: str, role: str, ttl_seconds: int | None = None) -> str:
    return gw.commands.issue_token(subject, role, TEST_ACTOR, ttl_seconds).token


def test_a_token_names_the_principal_and_one_of_its_roles(gw: Gateway) -> None:
    issued = gw.commands.issue_token("alice", "trainer", TEST_ACTOR)
    assert (issued.subject, issued.role) == ("alice", "trainer")
    caller = gw.decider.authenticate(issued.token)
    assert (caller.id, caller.role) == ("alice", "trainer")
    assert caller.token_id == issued.jti
    assert caller.principal.attributes == {"region": "eu"}


def test_roles_the_principal_lacks_cannot_be_issued(gw: Gateway) -> None:
    with pytest.raises(ValidationError):
        issue(gw, "alice", "admin")
    with pytest.raises(PrincipalNotFound):
        issue(gw, "mallory", "admin")


def test_expired_tokens_are_refused(gw: Gateway) -> None:
    token = issue(gw, "alice", "trainer", ttl_seconds=1)
    time.sleep(2.1)
    with pytest.raises(AuthError, match="expired"):
        gw.decider.authenticate(token)


def test_forged_tokens_are_refused(gw: Gateway) -> None:
    real = issue(gw, "alice", "trainer")
    claims = jwt.decode(real, options={"verify_signature": False})
    claims["role"] = "steward"
    forged = jwt.encode(claims, b"not-the-key" * 4, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid"):
        gw.decider.authenticate(forged)
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(AuthError):
        gw.decider.authenticate(unsigned)
    with pytest.raises(AuthError):
        gw.decider.authenticate("garbage")


def test_revoked_tokens_and_withdrawn_roles_are_refused(gw: Gateway) -> None:
    t1 = issue(gw, "alice", "trainer")
    gw.commands.revoke_token(gw.decider.authenticate(t1).token_id, TEST_ACTOR)
    with pytest.raises(AuthError, match="revoked"):
        gw.decider.authenticate(t1)
    t2 = issue(gw, "alice", "steward")
    gw.commands.put_principal("alice", ["trainer"], {"region": "eu"}, TEST_ACTOR)
    with pytest.raises(AuthError, match="withdrawn"):
        gw.decider.authenticate(t2)
    t3 = issue(gw, "alice", "trainer")
    gw.commands.disable_principal("alice", TEST_ACTOR)
    with pytest.raises(AuthError):
        gw.decider.authenticate(t3)


def test_revoke_all_revokes_every_token_of_a_principal(gw: Gateway) -> None:
    tokens = [issue(gw, "alice", "trainer") for _ in range(3)]
    assert gw.commands.revoke_tokens_of("alice", TEST_ACTOR) == 3
    for t in tokens:
        with pytest.raises(AuthError):
            gw.decider.authenticate(t)


@pytest.mark.parametrize(
    "attrs", [{"id": "x"}, {"role": "admin"}, {"bad name": 1}, {"ok": [1, 2]}, {"ok": None}]
)
def test_attributes_must_be_scalar_identifiers_other_than_id_and_role(
    gw: Gateway, attrs: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        gw.commands.put_principal("bob", ["trainer"], attrs, TEST_ACTOR)
