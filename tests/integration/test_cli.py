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
