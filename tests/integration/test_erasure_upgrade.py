"""Erasure requests stored before subjects were kept as commitments (release 0007 and earlier)
are keyed on upgrade: they get their commitment, lose the cleartext once complete, are logged,
and are found again by a repeated request."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from govern.events.commitment import Commitments
from govern.gateway import Gateway
from govern.store.models import ErasureRequest
from tests.conftest import TEST_ACTOR, raw_store


def _legacy_id(subject: str) -> str:
    # How request ids were made before: from the subject id itself.
    return "er-" + hashlib.sha256(json.dumps([subject, None]).encode()).hexdigest()[:24]


def test_requests_from_before_commitments_are_keyed_logged_and_found_again(
    gateway: Gateway,
) -> None:
    db = raw_store(gateway)
    try:
        with db.session() as s:
            for subject, state in (("P-old-1", "completed"), ("P-old-2", "excluded")):
                s.add(
                    ErasureRequest(
                        id=_legacy_id(subject),
                        subject_id=subject,
                        datasets=None,
                        legal_basis="gdpr-art17",
                        state=state,
                        excluded_rows=0 if state == "completed" else 4,
                        requested_by="officer",
                    )
                )
    finally:
        db.dispose()
    start = gateway.queries.log_size()
    assert gateway.commands.key_erasure_requests(TEST_ACTOR) == 2
    assert gateway.commands.key_erasure_requests(TEST_ACTOR) == 0  # nothing left: no entry
    key = Commitments(gateway.settings.commitment_key_bytes)
    entries = [v.entry for v in gateway.queries.ledger_entries(gateway.operator, start=start)]
    assert sorted((e["kind"], e["object"]) for e in entries) == sorted(
        [
            ("erasure.keyed", f"erasure:{_legacy_id('P-old-1')}"),
            ("erasure.keyed", f"erasure:{_legacy_id('P-old-2')}"),
            ("erasure.complete", f"erasure:{_legacy_id('P-old-1')}"),
        ]
    )
    assert all("P-old" not in json.dumps(e) for e in entries)
    done = gateway.queries.erasure_request(_legacy_id("P-old-1")).info
    assert (done.subject_id, done.subject_commitment) == (None, key.subject("P-old-1"))
    waiting = gateway.queries.erasure_request(_legacy_id("P-old-2")).info
    assert (waiting.subject_id, waiting.subject_commitment) == ("P-old-2", key.subject("P-old-2"))
    # The same subject again is the same request, not a second one.
    again = gateway.commands.request_erasure("P-old-1", None, "gdpr-art17", TEST_ACTOR)
    assert (again.id, again.created) == (_legacy_id("P-old-1"), False)
    db = raw_store(gateway)
    try:
        with db.session() as s:
            assert len(s.scalars(select(ErasureRequest)).all()) == 2
    finally:
        db.dispose()
