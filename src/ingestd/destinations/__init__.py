"""Destination adapters, looked up by kind and imported lazily.

A new kind is one module with a class taking a DestinationConfig and settings; add it to
KINDS, or name it in operator configuration (INGESTD_DESTINATION_KINDS, or a `module:Class`
kind in the TOML file), and the core needs no change. A kind typed into the admin API is
looked up, never imported (see code.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingestd.destinations.base import PULL_KINDS, Destination
from ingestd.destinations.code import allowed_kinds, import_attr, parse_target
from ingestd.destinations.options import check_options
from ingestd.errors import ConfigError

if TYPE_CHECKING:  # `import ingestd` (for Attempt, Destination) stays free of pydantic
    from ingestd.config import DestinationConfig, Settings

KINDS = {
    "handler": "ingestd.destinations.handler:HandlerDestination",
    "webhook": "ingestd.destinations.webhook:WebhookDestination",
    "sendgrid": "ingestd.destinations.email:SendGridDestination",
    "smtp": "ingestd.destinations.email:SmtpDestination",
    "inbox": "ingestd.destinations.inbox:InboxDestination",
}


def load_kind(kind: str, settings: Settings | None = None) -> Any:
    """The adapter class of a built-in or operator-configured kind; anything else is a
    ConfigError before any import."""
    custom = allowed_kinds(settings)
    target = KINDS.get(kind) or custom.get(kind)
    if target is None:
        known = ", ".join([*KINDS, *(k for k in custom if ":" not in k)])
        hint = (
            " (a custom kind is configured by the operator: INGESTD_DESTINATION_KINDS or "
            "a [[destinations]] entry in the INGESTD_CONFIG file)"
            if ":" in kind
            else ""
        )
        raise ConfigError(f"unknown destination kind {kind!r}; known: {known}{hint}")
    module_name, attr = parse_target(target, f"destination kind {kind!r}")
    cls = import_attr(module_name, attr, f"destination kind {kind!r}")
    if not isinstance(cls, type):
        raise ConfigError(f"destination kind {kind!r} ({target}) is not a class")
    return cls


def build_destination(config: DestinationConfig, settings: Settings) -> Destination:
    """Instantiate the adapter for one destination config."""
    cls = load_kind(config.kind, settings)
    known = getattr(cls, "OPTIONS", None)  # a custom kind without OPTIONS checks its own
    if known is not None:
        check_options(
            config.name, config.kind, config.options(), known, config.kind not in PULL_KINDS
        )
    destination: Destination = cls(config, settings)
    return destination
