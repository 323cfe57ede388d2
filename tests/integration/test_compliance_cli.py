"""`govern compliance` and `govern review`, run as a user would against a temporary home."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_cli import GOVERN


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so that rich does not fold ids inside the tables.
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_CONFIG": str(home / "none.toml"),
           "COLUMNS": "250"}  # fmt: skip
    env.pop("GOVERN_DATABASE_URL", None)
    return subprocess.run(
        [GOVERN, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("compliance-cli")
    assert run(h, "db", "upgrade").returncode == 0
    r = run(h, "demo", "load", "--scale", "0.02")
    assert r.returncode == 0, r.stderr
    return h


def test_rules_are_listed(home: Path) -> None:
    r = run(home, "compliance", "rules")
    assert r.returncode == 0, r.stderr
    for rule in ("gdpr-art6-lawful-basis", "hipaa-deidentification", "licence-compatibility"):
        assert rule in r.stdout


def test_check_prints_a_table_and_a_violation_denies_until_reviewed(home: Path) -> None:
    r = run(
        home, "compliance", "check", "--dataset", "chat_logs", "--purpose", "training",
        "--fact", "gdpr_scope=true", "--fact", "legal_basis=consent", "--fact", "consent=refused",
        "--rule", "gdpr-art6-lawful-basis", "--rule", "gdpr-art44-transfers",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "non_compliant" in r.stdout and "needs_review" in r.stdout
    assert "consent = 'refused'" in r.stdout.replace("\n", " ") or "refused" in r.stdout
    (rid,) = re.findall(r"rv_[0-9a-f]{16}", r.stdout)

    listed = run(home, "review", "list")
    assert listed.returncode == 0 and rid in listed.stdout

    bad = run(home, "review", "decide", rid, "--verdict", "fine")
    assert bad.returncode == 2 and "compliant or non_compliant" in bad.stderr
    ok = run(home, "review", "decide", rid, "--verdict", "compliant", "--note", "in the EU")
    assert ok.returncode == 0, ok.stderr
    assert "decided compliant" in ok.stdout
    assert rid not in run(home, "review", "list").stdout
    again = run(home, "review", "decide", rid, "--verdict", "compliant")
    assert again.returncode == 2 and "already decided" in again.stderr


def test_bad_input_is_a_message_and_exit_2(home: Path) -> None:
    r = run(home, "compliance", "check", "--purpose", "training", "--rule", "gdpr-art99")
    assert r.returncode == 2 and "gdpr-art99" in r.stderr and "Traceback" not in r.stderr
    r = run(home, "compliance", "check", "--purpose", "training", "--fact", "novalue")
    assert r.returncode == 2 and "key=value" in r.stderr
    r = run(home, "compliance", "check", "--purpose", "training", "--dataset", "no_such")
    assert r.returncode == 2 and "no dataset" in r.stderr


def test_check_names_the_readers_of_each_verdict(home: Path) -> None:
    r = run(
        home, "compliance", "check", "--purpose", "training", "--fact", "personal_data=true",
        "--fact", "gdpr_scope=true", "--fact", "legal_basis=contract",
        "--rule", "gdpr-art6-lawful-basis",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "compliant" in r.stdout and "read by: rules" in r.stdout.replace("\n", " ")
