"""docs/security.md names, for each threat, the tests that hold it: every one must exist, and
every test in tests/security must be named there, so the threat model cannot drift."""

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


def _references() -> list[tuple[str, str]]:
    return REFERENCE.findall((ROOT / "docs" / "security.md").read_text())


def test_every_test_the_threat_model_names_exists() -> None:
    refs = _references()
    assert refs
    for file, name in refs:
        path = ROOT / file
        assert path.is_file(), file
        assert name in _tests_in(path), f"{file}::{name}"


def test_every_security_test_is_named_in_the_threat_model() -> None:
    named = set(_references())
    here = Path(__file__).resolve()
    for path in sorted(here.parent.glob("test_*.py")):
        if path == here:
            continue
        file = path.relative_to(ROOT).as_posix()
        for name in sorted(_tests_in(path)):
            assert (file, name) in named, f"{file}::{name} is not in docs/security.md"


def test_every_threat_names_a_test() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    threats = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(threats) >= 10
    for threat in threats:
        assert REFERENCE.search(threat), f"threat {threat.splitlines()[0]!r} names no test"
