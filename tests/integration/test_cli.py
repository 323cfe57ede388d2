"""The real `govern` executable, run as a user would, against a temporary GOVERN_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOVERN = str(Path(sys.executable).with_name("govern"))


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_CONFIG": str(home / "none.toml")}
    env.pop("GOVERN_DATABASE_URL", None)
    return subprocess.run(
        [GOVERN, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("cli")
    assert run(h, "db", "upgrade").returncode == 0
    r = run(h, "demo", "load", "--scale", "0.02")
    assert r.returncode == 0, r.stderr
    return h


def test_help_lists_the_fixed_commands(home: Path) -> None:
    r = run(home, "--help")
    assert r.returncode == 0
    for command in ("serve", "db", "demo", "token"):
        assert command in r.stdout


def test_token_create_prints_only_the_token(home: Path) -> None:
    r = run(home, "token", "create", "--subject", "demo-trainer", "--role", "trainer")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n"
    assert token.count(".") == 2


def test_bad_input_gives_a_message_and_a_nonzero_exit(home: Path) -> None:
    r = run(home, "token", "create", "--subject", "demo-trainer", "--role", "admin")
    assert r.returncode == 2
    assert "does not hold role 'admin'" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(home, "dataset", "show", "../etc")
    assert r.returncode == 2 and "dataset names" in r.stderr
    r = run(home, "principal", "add", "bob", "--role", "trainer", "--attr", "novalue")
    assert r.returncode == 2 and "key=value" in r.stderr
    r = run(home, "token", "create", "--subject", "x")
    assert r.returncode == 2 and "--role" in r.stderr


def test_principals_and_datasets_are_listed(home: Path) -> None:
    r = run(home, "principal", "add", "bob", "--role", "trainer", "--attr", "region=us")
    assert r.returncode == 0, r.stderr
    r = run(home, "principal", "list")
    assert "bob" in r.stdout and "demo-trainer" in r.stdout
    r = run(home, "dataset", "list")
    assert "patient_notes" in r.stdout and "chat_logs" in r.stdout


def test_ledger_verify_fails_and_names_the_index_after_a_database_edit(home: Path) -> None:
    import sqlite3

    r = run(home, "ledger", "verify")
    assert r.returncode == 0, r.stderr
    assert "ledger OK" in r.stdout
    r = run(home, "ledger", "proof", "1")
    assert r.returncode == 0 and '"hashes"' in r.stdout
    assert run(home, "ledger", "export", str(home / "bundle.json")).returncode == 0
    with sqlite3.connect(home / "govern.db") as db:
        db.execute("UPDATE ledger_entries SET leaf = CAST('{}' AS BLOB) WHERE idx = 2")
    r = run(home, "ledger", "verify")
    assert r.returncode == 1
    assert "first bad index: 2" in r.stderr
    r = run(home, "ledger", "verify", "--bundle", str(home / "bundle.json"))
    assert r.returncode == 0, r.stderr


def test_policy_test_reports_a_failing_case_with_a_diff(home: Path, tmp_path: Path) -> None:
    from govern.resources import policies_dir

    spec = (policies_dir() / "tests" / "demo.yaml").read_text()
    spec = spec.replace("model: ../model.conf", f"model: {policies_dir() / 'model.conf'}")
    spec = spec.replace("rules: ../demo.csv", f"rules: {policies_dir() / 'demo.csv'}")
    broken = spec.replace("rows: [0, 2]", "rows: [0, 1, 2]")
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    r = run(home, "policy", "test", str(path))
    assert r.returncode == 1
    assert "FAIL" in r.stdout and "missing [1]" in r.stdout
    r = run(home, "policy", "test")
    assert r.returncode == 0, r.stdout
    assert "6 passed, 0 failed" in r.stdout
