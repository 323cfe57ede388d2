"""docs/invariants.md names, for each invariant, the tests that hold it: every one must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_invariant_names_tests_that_exist() -> None:
    text = (ROOT / "docs" / "invariants.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert [s.split(".", 1)[0] for s in sections] == [str(n) for n in range(1, 10)]
    for section in sections:
        refs = REFERENCE.findall(section)
        assert refs, f"invariant {section.split('.', 1)[0]} names no test"
        for file, name in refs:
            path = ROOT / file
            assert path.is_file(), file
            assert name in _tests_in(path), f"{file}::{name}"
