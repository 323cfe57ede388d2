from __future__ import annotations

import getpass
import stat
from pathlib import Path

import pytest

from govern.errors import ConfigError
from govern.settings import load_settings


def test_defaults_keep_all_state_under_home(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path / "h", config=tmp_path / "none.toml")
    assert s.mode == "development"
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'h' / 'govern.db').resolve()}"
    assert s.datasets_dir == tmp_path / "h" / "datasets"


def test_environment_overrides_toml_which_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "govern.toml"
    cfg.write_text('port = 9001\nflight_port = 9002\nlog_level = "debug"\n')
    monkeypatch.setenv("GOVERN_CONFIG", str(cfg))
    monkeypatch.setenv("GOVERN_PORT", "9100")
    s = load_settings(home=tmp_path)
    assert s.port == 9100  # env beats file
    assert s.flight_port == 9002  # file beats default
    assert s.log_level == "debug"


def test_unknown_keys_in_toml_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "govern.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config=cfg)
    assert info.value.details[0]["field"] == "prot"


REAL_SIGNING_SECRET = "s" * 40
REAL_COMMITMENT_KEY = "c" * 40


@pytest.mark.parametrize("secret", [None, "", "changeme", "short-but-real"])
def test_production_refuses_missing_placeholder_or_short_secrets(
    tmp_path: Path, secret: str | None
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        load_settings(
            mode="production",
            signing_secret=secret,
            commitment_key=REAL_COMMITMENT_KEY,
            config=tmp_path / "none.toml",
        )
    assert "GOVERN_SIGNING_SECRET" in str(info.value.details)


@pytest.mark.parametrize("key", [None, "", "changeme", "short-but-real", " " * 40])
def test_production_refuses_a_missing_placeholder_or_short_commitment_key(
    tmp_path: Path, key: str | None
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        load_settings(
            mode="production",
            signing_secret=REAL_SIGNING_SECRET,
            commitment_key=key,
            config=tmp_path / "none.toml",
        )
    assert "GOVERN_COMMITMENT_KEY" in str(info.value.details)


def test_production_accepts_a_real_secret_and_commitment_key(tmp_path: Path) -> None:
    s = load_settings(
        mode="production",
        signing_secret=REAL_SIGNING_SECRET,
        commitment_key=REAL_COMMITMENT_KEY,
        home=tmp_path / "h",
        config=tmp_path / "none.toml",
    )
    assert s.token_secret == b"s" * 40
    assert s.commitment_key_bytes == b"c" * 40
    assert not (tmp_path / "h" / "keys").exists()  # nothing generated in production


def test_development_generates_a_private_token_key_once(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, config=tmp_path / "none.toml")
    key = s.token_secret
    path = tmp_path / "keys" / "token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32
    assert load_settings(home=tmp_path, config=tmp_path / "none.toml").token_secret == key


def test_development_generates_a_private_commitment_key_once_apart_from_the_token_key(
    tmp_path: Path,
) -> None:
    s = load_settings(home=tmp_path, config=tmp_path / "none.toml")
    key = s.commitment_key_bytes
    path = tmp_path / "keys" / "commitment.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32
    assert key != s.token_secret
    assert load_settings(home=tmp_path, config=tmp_path / "none.toml").commitment_key_bytes == key


def test_the_cli_actor_names_the_login_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(home=tmp_path, config=tmp_path / "none.toml")
    assert s.cli_actor == f"cli:{getpass.getuser()}"
    monkeypatch.setenv("GOVERN_CLI_ACTOR", "ops:alice")
    assert load_settings(home=tmp_path, config=tmp_path / "none.toml").cli_actor == "ops:alice"
    with pytest.raises(ConfigError):
        load_settings(home=tmp_path, config=tmp_path / "none.toml", cli_actor="")
