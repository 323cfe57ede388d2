"""The real `govern` executable, run as a user would, against a temporary GOVERN_HOME."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from govern.errors import AuthError
from govern.gateway import Gateway
from govern.settings import load_settings

GOVERN = str(Path(sys.executable).with_name("govern"))


def run(home: Path, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOVERN_HOME": str(home), "GOVERN_CONFIG": str(home / "none.toml")}
    env.pop("GOVERN_DATABASE_URL", None)
    env.pop("GOVERN_CLI_ACTOR", None)
    if actor is not None:
        env["GOVERN_CLI_ACTOR"] = actor
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


def test_access_changes_are_logged_under_the_cli_actor(tmp_path: Path) -> None:
    h = tmp_path / "access"
    assert run(h, "db", "upgrade").returncode == 0
    r = run(h, "principal", "add", "carol", "--role", "trainer", "--attr", "region=eu")
    assert r.returncode == 0, r.stderr
    first = run(h, "token", "create", "--subject", "carol", "--role", "trainer")
    assert first.returncode == 0, first.stderr
    second = run(h, "token", "create", "--subject", "carol", "--role", "trainer")
    assert second.returncode == 0, second.stderr
    cli = "cli:" + getpass.getuser()

    def logged() -> list[dict[str, Any]]:
        gateway = Gateway.open(load_settings(home=h, config=h / "none.toml"))
        try:
            return [v.entry for v in gateway.queries.ledger_entries(gateway.operator)]
        finally:
            gateway.close()

    entries = logged()
    assert [(e["kind"], e["actor"]) for e in entries] == [
        ("principal.put", cli),
        ("token.issue", cli),
        ("token.issue", cli),
    ]
    assert entries[0]["object"] == "principal:carol"
    assert entries[0]["data"] == {
        "id": "carol",
        "roles": ["trainer"],
        "attributes": {"region": "eu"},
        "created": True,
    }
    jti = entries[1]["data"]["jti"]
    assert entries[1]["object"] == f"token:{jti}"
    assert (entries[1]["data"]["subject"], entries[1]["data"]["role"]) == ("carol", "trainer")
    assert first.stdout.strip() not in json.dumps(entries)  # the id is logged, never the token

    r = run(h, "token", "revoke", jti)
    assert r.returncode == 0 and "revoked" in r.stderr
    r = run(h, "token", "revoke", "--subject", "carol")
    assert r.returncode == 0 and "revoked 1 token(s)" in r.stderr
    r = run(h, "principal", "disable", "carol", actor="cli:ops")
    assert r.returncode == 0 and "principal carol disabled" in r.stderr

    entries = logged()[3:]
    assert [(e["kind"], e["actor"], e["object"]) for e in entries] == [
        ("token.revoke", cli, f"token:{jti}"),
        ("token.revoke_all", cli, "principal:carol"),
        ("principal.disable", "cli:ops", "principal:carol"),
    ]
    assert entries[0]["data"] == {"jti": jti, "subject": "carol"}
    assert entries[1]["data"]["subject"] == "carol" and len(entries[1]["data"]["jtis"]) == 1
    assert entries[1]["data"]["jtis"][0] != jti
    gateway = Gateway.open(load_settings(home=h, config=h / "none.toml"))
    try:
        assert gateway.queries.principal("carol").disabled
        for token in (first.stdout.strip(), second.stdout.strip()):
            with pytest.raises(AuthError):
                gateway.decider.authenticate(token)
    finally:
        gateway.close()


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


def test_model_prepare_converts_the_gguf_once_then_has_nothing_to_do(tmp_path: Path) -> None:
    from govern.compliance.model.local import LocalModel, default_gguf_path
    from tests.conftest import MODEL_CACHE

    env = {
        **os.environ,
        "GOVERN_HOME": str(tmp_path),
        "GOVERN_CONFIG": str(tmp_path / "none.toml"),
        "GOVERN_LLM_CACHE_DIR": str(MODEL_CACHE),  # converted at most once per clone
    }
    env.pop("GOVERN_DATABASE_URL", None)

    def prepare(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GOVERN, "model", "prepare"], capture_output=True, text=True,
                              env={**env, **extra}, timeout=600, check=False)  # fmt: skip

    first = prepare()
    assert first.returncode == 0, first.stderr
    assert LocalModel(default_gguf_path(), MODEL_CACHE).prepared()
    again = prepare()
    assert again.returncode == 0 and "nothing to prepare" in again.stderr
    remote = prepare(GOVERN_LLM_BACKEND="none")
    assert remote.returncode == 0 and "none: nothing to prepare" in remote.stderr
