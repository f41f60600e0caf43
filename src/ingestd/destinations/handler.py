"""A Python function as a destination: `module:function`, sync or async.

The function receives the Event (and may accept the Job as a second argument). Returning
normally is success; raising anything (SystemExit included) means retry, or dead once
attempts run out. Which functions may be named is checked in code.py. Sync functions
run in a thread so they cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.base import Attempt
from ingestd.destinations.code import check_handler, import_attr
from ingestd.errors import ConfigError
from ingestd.model import Job


def resolve(target: Any, settings: Settings | None, destination: str) -> Callable[..., Any]:
    """The allowed callable `target` names (checked before anything is imported)."""
    module_name, attr = check_handler(target, settings, destination)
    obj = import_attr(module_name, attr, f"handler {target!r}")
    if not callable(obj):
        raise ConfigError(f"handler {target!r} is not callable")
    return obj  # type: ignore[no-any-return]


class HandlerDestination:
    """Calls a Python function for each event."""

    OPTIONS = frozenset({"handler"})

    def __init__(self, config: DestinationConfig, settings: Settings | None = None) -> None:
        target = config.options().get("handler")
        if target is None:
            raise ConfigError(
                f"destination {config.name!r}: 'handler' (module:function) is required"
            )
        self._fn = resolve(target, settings, config.name)
        self._is_async = inspect.iscoroutinefunction(self._fn)
        params = inspect.signature(self._fn).parameters
        self._wants_job = len(params) >= 2

    async def deliver(self, job: Job) -> Attempt:
        args: tuple[Any, ...] = (job.event, job) if self._wants_job else (job.event,)
        if self._is_async:
            await self._fn(*args)
        else:
            await asyncio.to_thread(self._fn, *args)
        return Attempt(ok=True)

    async def close(self) -> None:
        return None
