from __future__ import annotations

import time

import jwt
import pytest

from govern.errors import AuthError, PrincipalNotFound, ValidationError
from govern.gateway import Gateway


@pytest.fixture
def gw(sqlite_gateway: Gateway) -> Gateway:
    sqlite_gateway.principals.upsert("alice", ["trainer", "steward"], {"region": "eu"})
    return sqlite_gateway


def test_a_token_names_the_principal_and_one_of_its_roles(gw: Gateway) -> None:
    caller = gw.tokens.verify(gw.tokens.issue("alice", "trainer"))
    assert (caller.id, caller.role) == ("alice", "trainer")
    assert caller.principal.attributes == {"region": "eu"}


def test_roles_the_principal_lacks_cannot_be_issued(gw: Gateway) -> None:
    with pytest.raises(ValidationError):
        gw.tokens.issue("alice", "admin")
    with pytest.raises(PrincipalNotFound):
        gw.tokens.issue("mallory", "admin")


def test_expired_tokens_are_refused(gw: Gateway) -> None:
    token = gw.tokens.issue("alice", "trainer", ttl_seconds=1)
    time.sleep(2.1)
    with pytest.raises(AuthError, match="expired"):
        gw.tokens.verify(token)


def test_forged_tokens_are_refused(gw: Gateway) -> None:
    real = gw.tokens.issue("alice", "trainer")
    claims = jwt.decode(real, options={"verify_signature": False})
    claims["role"] = "steward"
    forged = jwt.encode(claims, b"not-the-key" * 4, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid"):
        gw.tokens.verify(forged)
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(AuthError):
        gw.tokens.verify(unsigned)
    with pytest.raises(AuthError):
        gw.tokens.verify("garbage")


def test_revoked_tokens_and_withdrawn_roles_are_refused(gw: Gateway) -> None:
    t1 = gw.tokens.issue("alice", "trainer")
    gw.tokens.revoke(gw.tokens.verify(t1).token_id)
    with pytest.raises(AuthError, match="revoked"):
        gw.tokens.verify(t1)
    t2 = gw.tokens.issue("alice", "steward")
    gw.principals.upsert("alice", ["trainer"], {"region": "eu"})
    with pytest.raises(AuthError, match="withdrawn"):
        gw.tokens.verify(t2)
    t3 = gw.tokens.issue("alice", "trainer")
    gw.principals.disable("alice")
    with pytest.raises(AuthError):
        gw.tokens.verify(t3)


def test_revoke_all_revokes_every_token_of_a_principal(gw: Gateway) -> None:
    tokens = [gw.tokens.issue("alice", "trainer") for _ in range(3)]
    assert gw.tokens.revoke_all("alice") == 3
    for t in tokens:
        with pytest.raises(AuthError):
            gw.tokens.verify(t)


@pytest.mark.parametrize(
    "attrs", [{"id": "x"}, {"role": "admin"}, {"bad name": 1}, {"ok": [1, 2]}, {"ok": None}]
)
def test_attributes_must_be_scalar_identifiers_other_than_id_and_role(
    gw: Gateway, attrs: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        gw.principals.upsert("bob", ["trainer"], attrs)
