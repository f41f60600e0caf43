"""Settings: environment variables INGESTD_*, plus an optional TOML file (INGESTD_CONFIG).

The TOML file holds what does not fit in a variable: destinations and per-source rules.
Settings are read once at start and validated; `ingestd config` prints them, secrets masked.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ingestd.errors import ConfigError

DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Like Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""


class DestinationConfig(BaseModel):
    """One destination as declared in TOML or through the admin API."""

    model_config = {"extra": "allow"}

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
    kind: str
    event_types: list[str] = Field(default_factory=lambda: ["*"])
    sources: list[str] = Field(default_factory=list)
    retry_schedule: list[float] | None = None
    max_in_flight: int = Field(default=64, ge=1, le=10_000)
    enabled: bool = True

    def options(self) -> dict[str, Any]:
        """The kind-specific settings (url, secrets, handler, ...)."""
        return dict(self.model_extra or {})


class SourceConfig(BaseModel):
    """Per-source rules, e.g. which fields derive the idempotency key."""

    derive_key: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    """Every setting, from INGESTD_* variables (and `[settings]` in the TOML file)."""

    model_config = SettingsConfigDict(env_prefix="INGESTD_", extra="ignore")

    database_url: str = "sqlite:///./data/ingestd.db"
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    config: Path | None = None
    async_ingestion: bool = True
    max_event_bytes: int = 64 * 1024
    max_batch_bytes: int = 1024 * 1024
    max_batch: int = 1000
    max_pending: int = 20_000
    """Submissions waiting for the committer before ingest answers 503."""
    idempotency_ttl: float = 24 * 3600.0
    retention: float = 7 * 24 * 3600.0
    dead_retention: float = 30 * 24 * 3600.0
    retry_schedule: list[float] = Field(default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE))
    retry_jitter: float = 0.2
    worker_concurrency: int = 256
    worker_batch: int = 256
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    shutdown_grace: float = 10.0
    retry_after_seconds: int = 1
    webhook_allow_nets: list[str] = Field(default_factory=list)
    webhook_connect_timeout: float = 5.0
    webhook_timeout: float = 15.0
    breaker_consecutive_failures: int = 5
    breaker_failure_rate: float = 0.5
    breaker_window: float = 60.0
    breaker_min_calls: int = 20
    breaker_cooldown: float = 30.0
    disable_after: float = 5 * 24 * 3600.0
    """Disable a destination that has failed continuously this long (seconds)."""
    inbox_visibility: float = 30.0
    """Default lease of events handed out by GET /inbox/{destination}."""
    redis_url: str | None = None
    log_level: str = "info"
    bench_noop: bool = False
    """Serve POST /_bench/noop (a raw ASGI no-op: the benchmark's ceiling)."""

    destinations: list[DestinationConfig] = Field(default_factory=list)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)


SECRET_WORDS = ("secret", "password", "api_key", "token")


def load_settings(**overrides: Any) -> Settings:
    """Read the environment and the TOML file it names; raise ConfigError if invalid."""
    try:
        settings = Settings(**overrides)
        if settings.config is None:
            return settings
        doc = tomllib.loads(settings.config.read_text())
        extra: dict[str, Any] = dict(doc.get("settings", {}))
        extra["destinations"] = doc.get("destinations", [])
        extra["sources"] = doc.get("sources", {})
        # Environment wins over the file, explicit overrides over both.
        merged = {**extra, **settings.model_dump(exclude_unset=True), **overrides}
        return Settings(**merged)
    except (ValidationError, SettingsError) as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read INGESTD_CONFIG: {exc}") from exc


def masked(value: Any) -> Any:
    """A copy of a settings dump with secret-looking values replaced."""
    if isinstance(value, dict):
        return {
            k: ("***" if any(w in k.lower() for w in SECRET_WORDS) and v else masked(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        scheme, rest = value.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return value
