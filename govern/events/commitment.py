"""Keyed commitments: how a data subject, or free text, appears in the permanent log.

``Commitments(key).subject(sid)`` is HMAC-SHA256 of the subject id under the deployment's
commitment key (``Settings.commitment_key``, kept outside the log). Whoever holds the key and a
subject id can find that subject's requests in the log; nobody else can tell who asked, not even
by hashing candidate ids. Texts (assessment facts, review notes) are committed the same way
under their own label, so a digest of one can never be mistaken for the other.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import rfc8785

__all__ = ["Commitments"]

_SUBJECT = b"govern/subject/v1\x00"
_TEXT = b"govern/text/v1\x00"


class Commitments:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a commitment key has at least 32 bytes")
        self._key = key

    def subject(self, subject_id: str) -> str:
        """The commitment to one data subject id (64 hex digits)."""
        return hmac.new(self._key, _SUBJECT + subject_id.encode(), hashlib.sha256).hexdigest()

    def subjects(self, subject_ids: Iterable[str]) -> dict[str, str]:
        """{commitment: subject id} for many ids (the inverse a keyholder can build)."""
        return {self.subject(s): s for s in subject_ids}

    def text(self, value: str) -> str:
        return hmac.new(self._key, _TEXT + value.encode(), hashlib.sha256).hexdigest()

    def json(self, value: Mapping[str, Any]) -> str:
        """The commitment to a JSON object, over its canonical (RFC 8785) bytes."""
        return hmac.new(self._key, _TEXT + rfc8785.dumps(dict(value)), hashlib.sha256).hexdigest()
