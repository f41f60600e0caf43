"""Settings: environment variables INGESTD_*, plus an optional TOML file (INGESTD_CONFIG).

The TOML file holds what does not fit in a variable: destinations and per-source rules.
Settings are read once at start and validated; `ingestd config` prints them, secrets masked.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from ingestd.errors import ConfigError

MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)
PYTHON_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)
"""`package.module:attr`, as operator configuration names Python to run."""

DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Like Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""


def _schedule(delays: list[float]) -> list[float]:
    if not 1 <= len(delays) <= 100:
        raise ValueError("a retry schedule has 1 to 100 attempts")
    for delay in delays:
        if not (math.isfinite(delay) and 0 <= delay <= 30 * 86400):
            raise ValueError(f"each delay is 0 to 2592000 seconds (30 days), not {delay!r}")
    return delays


RetrySchedule = Annotated[list[float], AfterValidator(_schedule)]
"""Seconds before each attempt: finite, 0 to 30 days, 1 to 100 of them."""


class DestinationConfig(BaseModel):
    """One destination as declared in TOML or through the admin API."""

    model_config = {"extra": "allow", "use_attribute_docstrings": True}

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
    """Unique name: letters, digits, `_`, `.`, `-` (the inbox path and metrics label)."""
    kind: str
    """`webhook`, `sendgrid`, `smtp`, `handler`, `inbox`, or a custom kind."""
    event_types: list[str] = Field(default_factory=lambda: ["*"])
    """Glob patterns of the event types it receives; `*` takes every event."""
    sources: list[str] = Field(default_factory=list)
    """Sources it receives; empty = every source."""
    retry_schedule: RetrySchedule | None = None
    """Seconds before each attempt (default INGESTD_RETRY_SCHEDULE)."""
    max_in_flight: int = Field(default=64, ge=1, le=10_000)
    """Deliveries to this destination at once, per worker process."""
    enabled: bool = True
    """`false` keeps it declared but sends nothing (deliveries wait)."""

    def options(self) -> dict[str, Any]:
        """The kind-specific settings (url, secrets, handler, ...)."""
        return dict(self.model_extra or {})


class SourceConfig(BaseModel):
    """Per-source rules, e.g. which fields derive the idempotency key."""

    model_config = {"use_attribute_docstrings": True}

    derive_key: list[str] = Field(default_factory=list)
    """Envelope fields whose values make the idempotency key of an event without an id."""


class ApiKeyConfig(BaseModel):
    """One API key (`[[api_keys]]` in TOML): who it is, what it may do, its own limits."""

    model_config = {"use_attribute_docstrings": True}

    id: str = Field(min_length=1, max_length=128)
    """Names the key in logs, metrics and errors (never the key itself)."""
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    """The SHA-256 of the key, hex: `printf %s KEY | sha256sum`."""
    key: str | None = Field(None, min_length=16)
    """The key itself (development; prefer key_sha256)."""
    tenant: str = Field("default", min_length=1, max_length=128)
    """The tenant whose events this key sends and reads."""
    source: str | None = None
    """Pinned: events get this source; an event claiming another one is refused (403)."""
    scopes: list[Literal["ingest", "read", "admin"]] = ["ingest"]  # pydantic copies the default
    """`ingest`: send events and read their status; `read`: look at status, events, dead
    letters, deliveries and their attempts, destinations and inbox contents (GET only);
    `admin`: everything (reading included)."""
    rate: float | None = Field(None, ge=0)
    """Events per second for this key (default INGESTD_RATE_LIMIT)."""
    burst: int | None = Field(None, ge=1)
    """Bucket size for this key (default INGESTD_RATE_LIMIT_BURST)."""

    @model_validator(mode="after")
    def one_secret(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError(f"api key {self.id!r}: give exactly one of key_sha256 and key")
        return self


def api_keys_from_env(value: Any) -> Any:
    """INGESTD_API_KEYS: a JSON list of key tables, or plain keys separated by commas
    (each then gets tenant `default` and both scopes)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    keys = [k.strip() for k in text.split(",") if k.strip()]
    return [
        {"id": f"env-{n}", "key": k, "scopes": ["ingest", "admin"]} for n, k in enumerate(keys, 1)
    ]


LIST_FORMAT = 'a comma-separated list (a,b,c) or a JSON list (["a", "b"])'


def list_from_env(value: Any) -> Any:
    """A list-valued variable: `a,b,c` (how people write lists in the environment) or a
    JSON list; empty is an empty list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"not a valid JSON list; expected {LIST_FORMAT}") from None
    return [item.strip() for item in text.split(",") if item.strip()]


ListFromEnv = NoDecode
"""Marks a list setting whose variable `list_from_env` parses (pydantic-settings would
demand JSON)."""


class Settings(BaseSettings):
    """Every setting, from INGESTD_* variables (and `[settings]` in the TOML file)."""

    # Each field's docstring is its description: the configuration reference is generated
    # from them, and a test fails for a setting without one.
    model_config = SettingsConfigDict(
        env_prefix="INGESTD_", extra="ignore", use_attribute_docstrings=True
    )

    database_url: str = "sqlite:///./data/ingestd.db"
    """`sqlite:///relative.db`, `sqlite:////absolute/path.db` or `postgresql://user:pass@host/db`."""
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """`FULL`: each commit is fsynced before its 202 (survives power loss). `NORMAL`: survives a
    process crash; a power loss may lose the last acknowledged commits."""
    config: Path | None = None
    """TOML file with `[[destinations]]`, `[sources.NAME]`, `[[api_keys]]` and `[settings]`."""
    async_ingestion: bool = True
    """`false`: process each event inline and answer 200 with the outcome (the rollback switch)."""
    max_event_bytes: int = 64 * 1024
    """Largest body of one event (bytes); larger is 413, decided before reading when possible."""
    max_batch_bytes: int = 1024 * 1024
    """Largest body of POST /ingest/batch (bytes)."""
    max_batch: int = 1000
    """Most events in one POST /ingest/batch."""
    max_admin_body_bytes: int = 1024 * 1024
    """Bodies of every other route (destinations, replay, keys ...): larger is a 413."""
    http_first_byte_timeout: float = Field(10.0, gt=0)
    """Seconds a new connection may stay silent before it is closed."""
    http_head_timeout: float = Field(10.0, gt=0)
    """Seconds from a request's first byte to the end of its head (else 408)."""
    http_body_timeout: float = Field(30.0, gt=0)
    """Seconds a request's body may take past its head's deadline (else 408)."""
    http_max_connections: int = Field(4096, ge=1)
    """Open connections per process; one more gets a 503 and is closed."""
    http_max_url_bytes: int = Field(16 * 1024, ge=256)
    """Longest request target (path and query); longer is a 414."""
    http_max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request head (URL and headers); larger is a 431."""
    max_pending: int = 20_000
    """Submissions waiting for the committer before ingest answers 503."""
    idempotency_ttl: float = 24 * 3600.0
    """Seconds an idempotency key is kept; after that the same key is accepted as new."""
    retention: float = 7 * 24 * 3600.0
    """Seconds a delivered event is kept (GET /events, status) before pruning."""
    dead_retention: float = 30 * 24 * 3600.0
    """Seconds a dead delivery stays in the dead-letter queue for replay."""
    retry_schedule: Annotated[list[float], ListFromEnv, AfterValidator(_schedule)] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE)
    )
    """Seconds before each attempt; its length is the number of attempts (default Svix's):
    `0,5,300` or a JSON list."""
    retry_jitter: float = 0.2
    """Random spread of each retry delay, as a fraction (0.2 = ±20%)."""
    worker_concurrency: int = 256
    """Deliveries one worker process runs at once (across destinations)."""
    worker_batch: int = 256
    """Most deliveries a worker claims from the store in one query."""
    lease_seconds: float = 30.0
    """How long a claimed delivery is a worker's; extended while it runs, claimed again if
    the worker dies."""
    poll_interval: float = 1.0
    """Seconds between store polls when no arrival notice wakes the worker (a fallback)."""
    shutdown_grace: float = 10.0
    """Seconds SIGTERM waits for running deliveries and requests before releasing the rest."""
    retry_after_seconds: int = 1
    """The Retry-After of a 503 answered because the store or the committer is busy."""
    webhook_allow_nets: Annotated[list[str], ListFromEnv] = Field(default_factory=list)
    """CIDRs webhooks (and email servers) may reach although private or loopback (SSRF guard):
    `10.20.0.0/16,127.0.0.0/8` or a JSON list."""
    webhook_connect_timeout: float = 5.0
    """Seconds to connect to a webhook receiver (per destination: `connect_timeout`)."""
    outbound_proxy: str | None = None
    """Forward proxy for every outbound HTTP(S) call (webhooks, SendGrid, OTLP traces):
    `http://[user:password@]host:port`. Plain HTTP goes to it in absolute form, HTTPS is
    tunnelled with CONNECT. Unset: HTTPS_PROXY / HTTP_PROXY (or lower case) apply per
    destination scheme; `direct`: no proxy, whatever those say. The credentials become a
    Proxy-Authorization header, never shown in logs, attempts, metrics or `ingestd config`.
    The SSRF guard still judges each destination; the proxy's own address is allowed
    because it is named here."""
    outbound_no_proxy: str | None = None
    """Hosts reached without the proxy, comma-separated as NO_PROXY (which applies when
    this is unset): `*`, domains (`example.com` covers its subdomains), IP addresses and
    CIDR ranges, each optionally with `:port`. Matched against the URL's host, unresolved."""
    outbound_proxy_resolves: bool = False
    """For networks where only the proxy can resolve outside names: a destination name
    ingestd cannot resolve is handed to the proxy unjudged, and the proxy must refuse
    internal addresses itself. IP literals and names that do resolve here are still
    judged by the SSRF guard. Off: such a name fails (and is retried) before the proxy."""
    ca_bundle: Path | None = None
    """PEM file of CA certificates trusted for outbound TLS (webhooks, SendGrid, OTLP) besides
    the system's: e.g. the CA of a TLS-inspecting egress proxy. Checked at start. The
    system's are OpenSSL's defaults, where the standard SSL_CERT_FILE and SSL_CERT_DIR
    stand for the default file and directory when set."""
    webhook_timeout: float = 15.0
    """Seconds for a whole webhook attempt (per destination: `timeout`)."""
    attempt_log: bool = True
    """Keep every delivery attempt (time, duration, status or error, response headers and
    body's start) with its delivery: GET /deliveries/{id}, GET /ingest/{id}/status."""
    attempt_body_bytes: int = Field(4096, ge=0, le=65536)
    """Bytes of each response body the attempt log keeps (0: none)."""
    breaker_consecutive_failures: int = 5
    """Consecutive failures that open a destination's circuit breaker."""
    breaker_failure_rate: float = 0.5
    """Failure rate over `breaker_window` that opens the breaker (with `breaker_min_calls`)."""
    breaker_window: float = 60.0
    """Seconds of attempts the failure rate is measured over."""
    breaker_min_calls: int = 20
    """Attempts in the window before the failure rate can open the breaker."""
    breaker_cooldown: float = 30.0
    """Seconds an open breaker waits before one probe attempt decides."""
    disable_after: float = 5 * 24 * 3600.0
    """Disable a destination that has failed continuously this long (seconds)."""
    inbox_visibility: float = 30.0
    """Default lease of events handed out by GET /inbox/{destination}."""
    redis_url: str | None = None
    """Redis URL kept for integrations; the rate limit uses INGESTD_RATE_LIMIT_URL."""
    api_keys: Annotated[list[ApiKeyConfig], NoDecode] = Field(default_factory=list)
    """When any key is set, every request but auth_open_paths needs one."""
    allow_unauthenticated: bool = False
    """Serve on a non-loopback address without API keys (every route open); never implied."""
    auth_open_paths: Annotated[list[str], ListFromEnv] = Field(
        default_factory=lambda: ["/health", "/ready", "/metrics", "/openapi.json", "/docs"]
    )
    """Paths served without an API key when keys are configured (exact paths, comma-separated
    or a JSON list)."""
    rate_limit: float = 0.0
    """Events per second per API key (per client IP without keys); 0 = no limit."""
    rate_limit_burst: int | None = None
    """Bucket size: events allowed at once (default: one second's worth, at least 1)."""
    rate_limit_url: str = "memory://"
    """memory:// (per process) or redis://host:port/db (shared by every process)."""
    rate_limit_prefix: str = "ingestd:rl:"
    """Prefix of the Redis keys of the rate-limit buckets."""
    rate_limit_fail: Literal["open", "closed"] = "open"
    """When Redis is unreachable: let requests through (open) or answer 503 (closed)."""
    log_level: str = "info"
    """`debug`, `info`, `warning` or `error`."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line, with event, delivery and trace ids."""
    otel: bool = False
    """Trace with OpenTelemetry (the `otel` extra); OTEL_EXPORTER_OTLP_ENDPOINT also turns it on."""
    console: bool = True
    """Serve the operators' console at /console (`INGESTD_CONSOLE=false` turns it off)."""
    console_secret: str | None = None
    """Mixed into the console's session signatures, so a stored key digest alone cannot
    forge a session; set the same value on every API process."""
    bench_noop: bool = False
    """Serve POST /_bench/noop (a raw ASGI no-op: the benchmark's ceiling)."""

    handler_allow: Annotated[list[str], ListFromEnv] = Field(default_factory=list)
    """Python that handler destinations created at run time (POST /destinations) may call:
    `package.module` (any function in it) or `package.module:function`, comma-separated or a
    JSON list. Handlers declared in the TOML file are allowed without it."""
    destination_kinds: dict[str, str] = Field(default_factory=dict)
    """Custom destination kinds: name → `package.module:Class` (JSON in the environment)."""

    destinations: list[DestinationConfig] = Field(default_factory=list)
    """Destinations declared in the TOML file (`[[destinations]]`, in the reference below)."""
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    """Per-source rules from the TOML file (`[sources.NAME]`)."""

    @field_validator("handler_allow")
    @classmethod
    def _python_names(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not (MODULE_NAME.fullmatch(entry) or PYTHON_TARGET.fullmatch(entry)):
                raise ValueError(f"not a module or module:function: {entry!r}")
        return entries

    @field_validator("destination_kinds")
    @classmethod
    def _kind_targets(cls, kinds: dict[str, str]) -> dict[str, str]:
        for name, target in kinds.items():
            if not PYTHON_TARGET.fullmatch(target):
                raise ValueError(f"kind {name!r}: not a module:Class target: {target!r}")
        return kinds

    _keys_from_env = field_validator("api_keys", mode="before")(api_keys_from_env)
    _lists_from_env = field_validator(
        "retry_schedule", "webhook_allow_nets", "auth_open_paths", "handler_allow", mode="before"
    )(list_from_env)


LISTS = frozenset({"retry_schedule", "webhook_allow_nets", "auth_open_paths", "handler_allow"})


def setting_name(loc: tuple[int | str, ...]) -> str:
    """INGESTD_MAX_BATCH; INGESTD_RETRY_SCHEDULE item 2; INGESTD_API_KEYS[0].key; and
    destinations[0].url for what only the config file holds."""
    head, *rest = [str(part) for part in loc] or ["settings"]
    name = head if head in ("destinations", "sources") else f"INGESTD_{head.upper()}"
    if head in LISTS and len(rest) == 1 and rest[0].isdigit():
        return f"{name} item {int(rest[0]) + 1}"
    return name + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in rest)


def one_line(exc: ValidationError) -> str:
    """Every error of a validation as `NAME: what is wrong (expected …)`, on one line."""
    parts = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        field = str(loc[0]) if loc else ""
        if field in LISTS and "expected" not in message:
            message += f"; expected {LIST_FORMAT}"
        if not any(word in field for word in SECRET_WORDS) and "input" in error:
            shown = error["input"]
            if isinstance(shown, str | int | float) and len(str(shown)) <= 80:
                message += f" (got {shown!r})"
        parts.append(f"{setting_name(loc)}: {message}")
    return "; ".join(parts)


def decoding_failure(exc: SettingsError) -> str:
    """pydantic-settings' "error parsing value for field "x" from source …" as one line."""
    text = str(exc)
    match = re.search(r'field "([a-z_]+)"', text)
    if match is None:
        return text.splitlines()[0]
    return f"INGESTD_{match[1].upper()}: not valid JSON (this setting takes a JSON value)"


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
        # API keys add up: the file's and INGESTD_API_KEYS's.
        merged["api_keys"] = [*doc.get("api_keys", []), *merged.get("api_keys", [])]
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {one_line(exc)}") from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {decoding_failure(exc)}") from None
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
