"""Hypothesis over bearer-token verification: whatever a caller sends as a token, verification
either names a caller the store issued a live token to, or raises AuthError (a 401)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govern.auth import PrincipalService, TokenService
from govern.errors import AuthError
from govern.store import Database
from govern.store.migrate import upgrade

SECRET = b"s" * 48


def _segment(value: object) -> str:
    raw = json.dumps(value).encode() if not isinstance(value, bytes) else value
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(["govern", "other", ""]),
        "sub": st.sampled_from(["alice", "bob", "", "alice\x00"]) | st.text(max_size=10),
        "role": st.sampled_from(["trainer", "admin", "auditor"]) | st.text(max_size=8),
        "jti": st.text(max_size=40),
        "iat": st.integers(-(2**40), 2**40),
        "exp": st.integers(-(2**40), 2**40) | st.text(max_size=5),
    },
)
_HEADERS = st.sampled_from(
    [{"alg": "HS256", "typ": "JWT"}, {"alg": "none"}, {"alg": "HS512"}, {"alg": "RS256"}, {}]
)
_TOKENS = (
    st.text(max_size=300)
    | st.builds(
        lambda h, c, sig: f"{_segment(h)}.{_segment(c)}.{sig}",
        _HEADERS,
        _CLAIMS,
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=50),
    )
    | st.builds(lambda c: jwt.encode(c, SECRET, algorithm="HS256"), _CLAIMS)  # our key, any claims
    | st.builds(lambda c: jwt.encode(c, b"k" * 48, algorithm="HS256"), _CLAIMS)  # another key
)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TokenService, str]]:
    """A store with alice (a trainer) and one live token of hers, and that token's id."""
    url = f"sqlite:///{tmp_path_factory.mktemp('tokens') / 'govern.db'}"
    upgrade(url)
    db = Database(url)  # unguarded: this tests the part, not the command path
    PrincipalService(db).upsert("alice", ["trainer"])
    service = TokenService(db, SECRET, 3600)
    yield service, service.issue("alice", "trainer").jti
    db.dispose()


@settings(max_examples=400, deadline=None, derandomize=True)
@given(token=_TOKENS)
def test_any_token_names_an_issued_caller_or_is_refused(
    tokens: tuple[TokenService, str], token: str
) -> None:
    service, issued = tokens
    try:
        caller = service.verify(token)
    except AuthError:
        return
    # Only the token this store issued, for a live principal and role, gets through.
    assert (caller.id, caller.role, caller.token_id) == ("alice", "trainer", issued)
