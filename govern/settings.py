"""The one settings object. Nothing else in govern reads the environment.

Sources, highest first: explicit keyword arguments, ``GOVERN_*`` environment variables, the TOML
file named by ``GOVERN_CONFIG`` (default ``govern.toml`` in the working directory), defaults.
Every field is documented in ``docs/configuration.md``; a test keeps the two in step.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from govern.errors import ConfigError

__all__ = ["Settings", "load_settings"]

_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "development", "dev"}
_MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GOVERN_", extra="forbid", validate_default=True, frozen=True
    )

    mode: Literal["development", "production"] = Field(
        "development",
        description="development generates missing secrets under home; production refuses them.",
    )
    home: Path = Field(Path(".govern"), description="Directory holding all state.")
    config: Path = Field(Path("govern.toml"), description="TOML file read for settings.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite file under home."
    )
    signing_secret: SecretStr | None = Field(
        None, description="HMAC key for bearer tokens (at least 32 bytes)."
    )
    token_ttl_seconds: int = Field(12 * 3600, gt=0, description="Lifetime of issued tokens.")
    host: str = Field("127.0.0.1", description="REST bind address.")
    port: int = Field(8000, ge=0, le=65535, description="REST port.")
    flight_port: int = Field(8815, ge=0, le=65535, description="Arrow Flight port.")
    provenance_flush_seconds: float = Field(
        5.0,
        gt=0,
        description="How often a read in flight merges the row ids it delivered into its run.",
    )
    flight_shutdown_seconds: float = Field(
        10.0, gt=0, description="How long stopping Flight waits for reads in flight to end."
    )
    max_body_bytes: int = Field(
        1 << 20, gt=0, description="Largest JSON request body accepted, in bytes."
    )
    max_upload_bytes: int = Field(
        2 << 30, gt=0, description="Largest dataset upload accepted, in bytes."
    )
    policy_watcher: Literal["none", "database"] = Field(
        "database",
        description="How replicas learn of policy changes: store NOTIFY and polling, or none.",
    )
    policy_poll_seconds: float = Field(
        2.0, gt=0, description="Interval of the database policy watcher."
    )
    log_level: str = Field("info", description="Log level for the service.")
    ledger_origin: str = Field(
        "govern.local/ledger",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$",
        description="The access log's name: checkpoint origin line and signing key name.",
    )
    chain_backend: Literal["embedded", "rpc", "none"] = Field(
        "embedded",
        description="Where checkpoints are anchored: in-process EVM under home, a JSON-RPC "
        "node, or nowhere. Setting chain_rpc_url alone selects rpc.",
    )
    chain_rpc_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Ethereum JSON-RPC endpoint (http or https) for the rpc backend.",
    )
    chain_key_file: Path | None = Field(
        None,
        description="Hex secp256k1 private key (mode 0600) that signs and pays for anchors; "
        "default home/keys/chain.key.",
    )
    chain_contract_address: str | None = Field(
        None,
        pattern=r"^0x[0-9a-fA-F]{40}$",
        description="Anchor contract to use; default: the one this gateway deployed.",
    )
    anchor_every_entries: int = Field(
        1000, gt=0, description="Anchor once this many entries are not yet anchored."
    )
    anchor_every_seconds: float = Field(
        60.0, gt=0, description="Anchor when the oldest unanchored entry is this old."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML path itself may come from init or env, so resolve it before reading the file.
        config_path = Path(
            str(init_settings().get("config") or env_settings().get("config") or "govern.toml")
        )
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_path)
        return (init_settings, env_settings, toml)

    @model_validator(mode="before")
    @classmethod
    def _rpc_url_selects_rpc(cls, data: Any) -> Any:
        # GOVERN_CHAIN_RPC_URL alone is how production points at a chain (DESIGN.md).
        if isinstance(data, dict) and data.get("chain_rpc_url") and "chain_backend" not in data:
            return {**data, "chain_backend": "rpc"}
        return data

    @model_validator(mode="after")
    def _rpc_backend_needs_url(self) -> Settings:
        if self.chain_backend == "rpc" and not self.chain_rpc_url:
            raise ValueError("chain_backend rpc needs GOVERN_CHAIN_RPC_URL")
        return self

    @model_validator(mode="after")
    def _refuse_weak_secret_in_production(self) -> Settings:
        if self.mode != "production":
            return self
        secret = self.signing_secret.get_secret_value() if self.signing_secret else ""
        if secret.strip().lower() in _PLACEHOLDER_SECRETS or len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(
                "production mode needs GOVERN_SIGNING_SECRET: at least "
                f"{_MIN_SECRET_BYTES} characters and not a placeholder"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'govern.db').resolve()}"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def chain_dir(self) -> Path:
        """The embedded chain's database and the addresses of deployed contracts."""
        return self.home / "chain"

    @property
    def resolved_chain_key_file(self) -> Path:
        return self.chain_key_file or self.keys_dir / "chain.key"

    @cached_property
    def token_secret(self) -> bytes:
        """The token signing key; generated once under home in development mode."""
        if self.signing_secret is not None:
            return self.signing_secret.get_secret_value().encode()
        if self.mode == "production":  # unreachable after validation; kept as a guard
            raise ConfigError("no signing secret in production mode")
        path = self.keys_dir / "token.key"
        if not path.exists():
            self.keys_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's validation error into a ConfigError."""
    from pydantic import ValidationError as PydanticValidationError

    try:
        return Settings(**overrides)
    except PydanticValidationError as exc:
        raise ConfigError(
            "invalid configuration",
            details=[
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ],
        ) from exc
