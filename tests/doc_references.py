"""Docs that name the tests holding a claim (invariants, threats, faults) name them as
`tests/<file>.py::test_<name>`; these helpers find such names and check that they exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def defined_tests(path: Path) -> set[str]:
    """The test functions defined at the top level of ``path``."""
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def references(text: str) -> list[tuple[str, str]]:
    return REFERENCE.findall(text)


def assert_exist(refs: list[tuple[str, str]]) -> None:
    """Every (file, test) named is a test that exists."""
    for file, name in refs:
        path = ROOT / file
        assert path.is_file(), file
        assert name in defined_tests(path), f"{file}::{name}"
