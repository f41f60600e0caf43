"""Which Python a destination may run: only what the operator named, never request data.

A `module:attr` string is imported only if operator configuration allows it: the TOML
file's `[[destinations]]` (their `handler`, or a custom `kind`), INGESTD_HANDLER_ALLOW
(modules, or exact `module:function` targets) or INGESTD_DESTINATION_KINDS (kind name →
`module:Class`). Everything else — a target typed into `POST /destinations`, or a stored
row from before this check — is refused before anything is imported or called.
"""

from __future__ import annotations

import importlib
from typing import Any

from ingestd.config import PYTHON_TARGET, Settings
from ingestd.errors import ConfigError


def parse_target(target: str, what: str) -> tuple[str, str]:
    """`package.module:attr` split in two, or ConfigError; imports nothing."""
    if not isinstance(target, str) or not PYTHON_TARGET.fullmatch(target):
        raise ConfigError(f"{what} must look like 'package.module:name', got {target!r}")
    module_name, _, attr = target.partition(":")
    return module_name, attr


def allowed_handlers(settings: Settings | None) -> tuple[frozenset[str], frozenset[str]]:
    """(exact targets, whole modules) that handler destinations may call."""
    if settings is None:
        return frozenset(), frozenset()
    exact = {t for t in settings.handler_allow if ":" in t}
    modules = {t for t in settings.handler_allow if ":" not in t}
    for dest in settings.destinations:
        target = dest.options().get("handler")
        if dest.kind == "handler" and isinstance(target, str):
            exact.add(target)
    return frozenset(exact), frozenset(modules)


def allowed_kinds(settings: Settings | None) -> dict[str, str]:
    """Custom destination kinds by name (a `module:Class` kind in the file names itself)."""
    if settings is None:
        return {}
    kinds = dict(settings.destination_kinds)
    for dest in settings.destinations:
        if ":" in dest.kind:
            kinds.setdefault(dest.kind, dest.kind)
    for target in list(kinds.values()):
        kinds.setdefault(target, target)  # an allowed class may be named by its target too
    return kinds


def check_handler(target: Any, settings: Settings | None, destination: str) -> tuple[str, str]:
    """The handler's (module, attr) if the operator allowed it; ConfigError otherwise."""
    module_name, attr = parse_target(target, f"destination {destination!r}: 'handler'")
    exact, modules = allowed_handlers(settings)
    if target not in exact and module_name not in modules:
        raise ConfigError(
            f"destination {destination!r}: handler {target!r} is not allowed. The Python a "
            "handler runs is operator configuration, never request data: declare the "
            "destination in the INGESTD_CONFIG file, or allow the module or target with "
            "INGESTD_HANDLER_ALLOW in every process that runs it"
        )
    return module_name, attr


def import_attr(module_name: str, attr: str, what: str) -> Any:
    """Import an allowed target; a failure is a ConfigError naming it."""
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what} cannot be imported: {exc}") from exc
    return obj
