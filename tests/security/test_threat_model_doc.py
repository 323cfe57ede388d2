"""docs/security.md names, for each threat, the tests that hold it: every one must exist, and
every test in tests/security must be named there, so the threat model cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

from tests.doc_references import REFERENCE, ROOT, assert_exist, defined_tests, references


def _references() -> list[tuple[str, str]]:
    return references((ROOT / "docs" / "security.md").read_text())


def test_every_test_the_threat_model_names_exists() -> None:
    refs = _references()
    assert refs
    assert_exist(refs)


def test_every_security_test_is_named_in_the_threat_model() -> None:
    named = set(_references())
    here = Path(__file__).resolve()
    for path in sorted(here.parent.glob("test_*.py")):
        if path == here:
            continue
        file = path.relative_to(ROOT).as_posix()
        for name in sorted(defined_tests(path)):
            assert (file, name) in named, f"{file}::{name} is not in docs/security.md"


def test_every_threat_names_a_test() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    threats = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(threats) >= 10
    for threat in threats:
        assert REFERENCE.search(threat), f"threat {threat.splitlines()[0]!r} names no test"
