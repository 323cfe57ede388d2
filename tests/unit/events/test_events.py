"""The typed events: one class per kind, JSON data, and docs/events.md generated from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from govern.events import EVENT_KINDS, Event, event_class
from govern.events.commitment import Commitments
from govern.events.schema import markdown
from govern.ledger.canonical import canonical_json

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events.md"


def test_docs_events_md_is_generated_from_the_classes() -> None:
    assert DOCS.read_text() == markdown(), "run: python -m govern.events > docs/events.md"


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
def test_every_kind_has_data_with_a_canonical_json_form_and_an_object(kind: str) -> None:
    cls = event_class(kind)
    assert cls.kind == kind
    sample = cls(**{f.name: f"<{f.name}>" for f in dataclasses.fields(cls)})
    assert canonical_json(sample.to_data())
    ref = sample.object_ref()
    assert ":" in ref and ref.split(":", 1)[0].isalpha()


def test_a_kind_is_declared_once() -> None:
    with pytest.raises(TypeError, match="declared twice"):

        @dataclasses.dataclass(frozen=True, kw_only=True)
        class Again(Event):
            kind = "decision"

            def object_ref(self) -> str:
                return "x:y"


def test_no_event_has_a_field_for_a_subject_id_or_free_text() -> None:
    # Invariant 8 by construction: the names a subject or a text would go under are absent.
    banned = {"subject_id", "description", "note", "message", "rationale", "facts", "email"}
    for cls in EVENT_KINDS.values():
        assert not banned & {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_commitments_are_keyed_and_deterministic() -> None:
    a, b = Commitments(b"k" * 32), Commitments(b"j" * 32)
    assert a.subject("P000123") == a.subject("P000123")
    assert a.subject("P000123") != b.subject("P000123")
    assert a.subject("P000123") != a.text("P000123")  # labelled apart
    assert len(a.subject("x")) == 64 and "P000123" not in a.subject("P000123")
    assert a.subjects(["x", "y"]) == {a.subject("x"): "x", a.subject("y"): "y"}
    with pytest.raises(ValueError, match="32 bytes"):
        Commitments(b"short")
