"""Process start: configure logging and tracing from the settings (once per process)."""

from __future__ import annotations

import os

from ingestd.config import Settings
from ingestd.errors import ConfigError
from ingestd.obs import logs, tracing


def tracing_wanted(settings: Settings) -> bool:
    """INGESTD_OTEL=true, or an OTLP endpoint in the environment (unless OTel is disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return settings.otel or bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(settings: Settings) -> None:
    """Install the OpenTelemetry tracer when asked for; keep a tracer already installed."""
    if tracing.tracer().enabled or not tracing_wanted(settings):
        return
    try:
        from ingestd.obs import otel
    except ImportError as exc:
        raise ConfigError(
            "tracing is on (INGESTD_OTEL or OTEL_EXPORTER_OTLP_ENDPOINT) but OpenTelemetry "
            f"is not installed ({exc}): pip install 'ingestd[otel]'"
        ) from None
    tracing.install(otel.from_environment(settings))


def configure(settings: Settings) -> None:
    """Logging (INGESTD_LOG_LEVEL, INGESTD_LOG_FORMAT) and tracing for this process."""
    logs.configure(settings.log_level, settings.log_format)
    configure_tracing(settings)
