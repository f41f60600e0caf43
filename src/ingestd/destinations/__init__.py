"""Destination adapters, looked up by kind and imported lazily.

A new kind is one module with a class taking a DestinationConfig and settings; add it to
KINDS (or pass `module:Class` as the kind) and the core needs no change.
"""

from __future__ import annotations

import importlib
from typing import Any

from ingestd.config import DestinationConfig, Settings
from ingestd.delivery import Destination
from ingestd.errors import ConfigError

KINDS = {
    "handler": "ingestd.destinations.handler:HandlerDestination",
    "webhook": "ingestd.destinations.webhook:WebhookDestination",
    "sendgrid": "ingestd.destinations.email:SendGridDestination",
    "smtp": "ingestd.destinations.email:SmtpDestination",
    "inbox": "ingestd.destinations.inbox:InboxDestination",
}


def load_kind(kind: str) -> Any:
    target = KINDS.get(kind, kind)
    if ":" not in target:
        raise ConfigError(f"unknown destination kind {kind!r}; known: {', '.join(KINDS)}")
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"destination kind {kind!r} cannot be loaded: {exc}") from exc


def build_destination(config: DestinationConfig, settings: Settings) -> Destination:
    """Instantiate the adapter for one destination config."""
    cls = load_kind(config.kind)
    destination: Destination = cls(config, settings)
    return destination
