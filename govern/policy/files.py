"""Policy sets kept as files: a Casbin model (.conf) and rules (.csv, one rule a line)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from govern.errors import PolicyInvalid

__all__ = ["parse_rules", "read_rules"]


def parse_rules(text: str) -> list[list[str]]:
    """CSV rules: `ptype, v0, v1, ...`; `#` starts a comment line; quote fields with commas."""
    rules = []
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for n, row in enumerate(csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)):
        fields = [f.strip() for f in row]
        if len(fields) < 2:
            raise PolicyInvalid(f"rule line {n + 1} has no fields", details={"line": n + 1})
        rules.append(fields)
    return rules


def read_rules(path: Path) -> list[list[str]]:
    return parse_rules(path.read_text())
