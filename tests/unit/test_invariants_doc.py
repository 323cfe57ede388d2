"""docs/invariants.md names, for each invariant, the tests that hold it: every one must exist."""

from __future__ import annotations

import re

from tests.doc_references import ROOT, assert_exist, references


def test_every_invariant_names_tests_that_exist() -> None:
    text = (ROOT / "docs" / "invariants.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert [s.split(".", 1)[0] for s in sections] == [str(n) for n in range(1, 10)]
    for section in sections:
        refs = references(section)
        assert refs, f"invariant {section.split('.', 1)[0]} names no test"
        assert_exist(refs)


def test_every_test_the_fault_catalogue_names_exists() -> None:
    refs = references((ROOT / "docs" / "faults.md").read_text())
    assert refs
    assert_exist(refs)
