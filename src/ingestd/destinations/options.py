"""The options of a destination, checked as they will be stored, before anything commits.

Each built-in kind names its options (`OPTIONS`) and reads numbers through `number()`,
so an unknown option (a typo), a string where seconds go, NaN, Infinity or a negative
timeout is a 422 at `POST`/`PATCH /destinations` instead of a stored row that fails
later (an inbox with `"visibility": "abc"` was a 201, then every `GET /inbox` a 500).
"""

from __future__ import annotations

import math
from typing import Any

from ingestd.errors import ConfigError

DAY = 86400.0

BREAKER = {
    "breaker_consecutive_failures": (1, 1_000_000, True),
    "breaker_failure_rate": (0.0, 1.0, False),
    "breaker_window": (1.0, 30 * DAY, False),
    "breaker_min_calls": (1, 1_000_000, True),
    "breaker_cooldown": (0.0, 30 * DAY, False),
    "breaker_probe_lease": (1.0, DAY, False),
    "disable_after": (0.0, 3650 * DAY, False),
}
"""Per-destination breaker overrides every push kind takes: (low, high, integer)."""


def number(
    options: dict[str, Any],
    name: str,
    default: float,
    *,
    low: float,
    high: float,
    integer: bool = False,
    destination: str = "?",
) -> float:
    """options[name] as a finite number within [low, high] (default when absent)."""
    value = options.get(name, default)
    kind = "an integer" if integer else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ConfigError(
            f"destination {destination!r}: {name!r} must be {kind} from {low:g} to "
            f"{high:g}, not {value!r}"
        )
    return value


def timeout(options: dict[str, Any], name: str, default: float, destination: str) -> float:
    """A timeout in seconds: more than nothing, at most an hour."""
    return number(options, name, default, low=0.001, high=3600.0, destination=destination)


def check_options(
    destination: str, kind: str, options: dict[str, Any], known: frozenset[str], push: bool
) -> None:
    """Refuse options a kind does not know, and breaker overrides out of range."""
    allowed = known | (BREAKER.keys() if push else frozenset())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"destination {destination!r}: unknown option(s) {', '.join(map(repr, unknown))} "
            f"for kind {kind!r}; it takes {', '.join(sorted(allowed)) or 'none'}"
        )
    for name, (low, high, integer) in BREAKER.items():
        if name in options:
            number(options, name, low, low=low, high=high, integer=integer, destination=destination)
