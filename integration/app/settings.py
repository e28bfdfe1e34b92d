"""Service configuration: one pydantic-settings class, read once at the entry point.

Environment variables use the ``RADGPT_`` prefix and ``__`` for nesting, e.g.
``RADGPT_KAFKA__BOOTSTRAP_SERVERS``, ``RADGPT_DATABASE__URL``, ``RADGPT_INFERENCE__URL``.
Secrets are :class:`~pydantic.SecretStr` and can also come from files in ``secrets_dir``
(Kubernetes Secret mounts).  Library code never reads the environment: entry points build a
:class:`Settings` and pass the pieces down.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from inference.backends.factory import BackendConfig

__all__ = [
    "ApiSettings",
    "AuditSettings",
    "AuthSettings",
    "DatabaseSettings",
    "FhirSinkSettings",
    "InferenceSettings",
    "KafkaSettings",
    "PipelineSettings",
    "Settings",
    "TopicSettings",
]


class TopicSettings(BaseModel):
    hl7_in: str = "radiology.hl7.oru"
    fhir_in: str = "radiology.fhir.diagnosticreport"
    hl7_out: str = "radiology.hl7.preliminary"
    fhir_out: str = "radiology.fhir.preliminary"
    dead_letter: str = "radiology.deadletter"
    # Created at startup when missing (admin client); replicas of `radgpt serve` <= partitions.
    create_missing: bool = True
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class KafkaSettings(BaseModel):
    """Kafka connection; the defaults point at the embedded broker used by the demo."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "radgpt"
    group_id: str = "radgpt-impression-drafter"
    topics: TopicSettings = Field(default_factory=TopicSettings)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    # Real Kafka supports idempotent producers; the embedded Tansu broker does not.
    enable_idempotence: bool = False
    session_timeout_ms: int = 30_000
    max_poll_interval_ms: int = 300_000


class DatabaseSettings(BaseModel):
    """SQLAlchemy async URL: ``postgresql+asyncpg://...`` in production, SQLite embedded.

    Plain ``postgresql://`` / ``postgres://`` URLs (as PostgreSQL operators write them into
    Secrets) and ``sqlite://`` URLs are rewritten to the async drivers.
    """

    url: SecretStr = SecretStr("sqlite+aiosqlite:///radgpt.db")
    pool_size: int = 5
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        for plain, driver in _ASYNC_DRIVERS.items():
            if url.startswith(plain):
                return SecretStr(driver + url[len(plain) :])
        return value


_ASYNC_DRIVERS = {
    "postgresql://": "postgresql+asyncpg://",
    "postgres://": "postgresql+asyncpg://",
    "sqlite://": "sqlite+aiosqlite://",
}


class InferenceSettings(BaseModel):
    # "instant": in-process extractive stand-in, for benchmarks and smoke tests only
    backend: Literal["tgi", "openai", "local", "instant"] = "tgi"
    url: str = "http://127.0.0.1:8080"
    adapter: str = "radiology"
    model: str | None = Field(default=None, description="model name for the openai backend")
    api_key: SecretStr | None = None
    timeout_s: float = 60.0
    max_new_tokens: int = 96
    max_concurrency: int = 16
    max_retries: int = 4
    circuit_failure_threshold: int = 5
    circuit_reset_s: float = 30.0
    verify_adapter: bool = True
    adapter_path: Path | None = Field(
        default=None, description="adapter directory (local backend; canary metadata)"
    )
    cache_dir: Path | None = None
    # Verify and choose: sampled candidates generated when the greedy draft fails the checks
    # (0: straight to the extractive fallback; chosen on the validate split, see results.md).
    samples: int = Field(default=0, ge=0, le=16)
    # Scopes a site has validated beyond the adapter's own ("CT:CHEST", "code:71250").
    extra_scopes: list[str] = Field(default_factory=list)

    def backend_config(self) -> BackendConfig:
        """These settings as the inference package's :class:`BackendConfig` (the settings
        are translated here, at the application edge; ``inference`` never reads them)."""
        from inference.backends.factory import BackendConfig
        from inference.backends.resilience import ResiliencePolicy

        return BackendConfig(
            backend=self.backend,
            url=self.url,
            adapter=self.adapter or None,
            model=self.model,
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            max_new_tokens=self.max_new_tokens,
            verify_adapter=self.verify_adapter,
            adapter_path=self.adapter_path,
            cache_dir=self.cache_dir,
            policy=ResiliencePolicy(
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                circuit_failure_threshold=self.circuit_failure_threshold,
                circuit_reset_s=self.circuit_reset_s,
                max_concurrency=self.max_concurrency,
            ),
        )


class PipelineSettings(BaseModel):
    max_in_flight: int = 32
    output_formats: list[Literal["hl7", "fhir"]] = Field(
        default_factory=lambda: ["hl7", "fhir"]  # type: ignore[arg-type]
    )
    hl7_preliminary_status: Literal["P", "R"] = "P"
    # Identity and character sets of the codecs (docs/hl7-fhir-mapping.md).
    # FHIR identifier systems that hold accession numbers at this site (untyped identifiers).
    accession_systems: list[str] = Field(default_factory=list)
    # HL7 v2 fields searched for the accession, in order (dcm4chee-style sites: OBR-18 first).
    hl7_accession_fields: list[str] = Field(
        default_factory=lambda: ["OBR-3", "ORC-3", "OBR-2", "ORC-2", "OBR-18", "OBR-19", "OBR-20"]
    )
    # MSH-18 value (or Python codec) used when bytes do not decode in the declared MSH-18;
    # None: such messages are dead-lettered. A fallback used is recorded on the report.
    hl7_charset_fallback: str | None = None
    # MSH-18 of answers to messages that declare none (None: the v2 default, ASCII).
    hl7_output_charset: str | None = None
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 30.0
    # Answer in the format the report came in (HL7 in -> HL7 out); False: every output_format.
    answer_in_kind: bool = True
    # On shutdown/rebalance, how long in-flight reports may finish before they are released.
    drain_timeout_s: float = 20.0
    # Largest inbound message accepted (bytes); larger ones are dead-lettered, and the CLI
    # refuses files over it. Producer limits follow it.
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Attempts of one message on errors of its own (not a dependency being down) before it
    # is dead-lettered with the history.
    max_attempts: int = Field(default=5, ge=1)
    # While a dependency is down, it is probed every probe_initial_s, doubling up to this.
    probe_interval_max_s: float = Field(default=2.0, gt=0)


class FhirSinkSettings(BaseModel):
    """Optional: also PUT the FHIR transaction Bundle to a FHIR server."""

    url: str | None = None
    token: SecretStr | None = None
    timeout_s: float = 10.0


class AuthSettings(BaseModel):
    issuer: str = "radgpt-dev"
    audience: str = "radgpt"
    jwks_url: str | None = None
    public_keys: list[str] = Field(default_factory=list, description="PEM public keys")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    role_claim: str = "roles"
    # Trust the local development key (``radgpt dev-token``). Never in production.
    trust_dev_key: bool = False
    dev_key_path: Path | None = None
    # Unauthenticated requests per client address: a token bucket (then 429), and at most
    # this many audit rows a minute (the rest are summarised);
    # see integration.review.web.rate_limit.
    unauthenticated_rate_per_s: float = Field(default=5.0, gt=0)
    unauthenticated_burst: int = Field(default=20, ge=1)
    unauthenticated_audit_per_minute: int = Field(default=10, ge=0)


class AuditSettings(BaseModel):
    """Signed checkpoints of the audit chain's head, outside the database
    (see :mod:`integration.audit.checkpoint`); off unless both path and key are set."""

    checkpoint_path: Path | None = None
    checkpoint_key: SecretStr | None = None
    checkpoint_interval_s: float = Field(default=300.0, gt=0)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RADGPT_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: Literal["local", "staging", "production"] = "local"
    log_level: str = "INFO"
    # Lets third-party loggers that print message values (aiokafka, asyncpg, httpx...) log
    # below INFO; they may then write patient data to the logs. Never in production.
    log_unsafe_payloads: bool = False
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    fhir_sink: FhirSinkSettings = Field(default_factory=FhirSinkSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _no_dev_trust_in_production(self) -> Settings:
        if self.environment != "local" and self.auth.trust_dev_key:
            raise ValueError("auth.trust_dev_key is only allowed when environment=local")
        return self
