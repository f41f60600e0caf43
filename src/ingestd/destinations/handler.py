"""A Python function as a destination: `module:function`, sync or async.

The function receives the Event (and may accept the Job as a second argument). Returning
normally is success; raising means retry (or dead once attempts run out). Sync functions
run in a thread so they cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from ingestd.config import DestinationConfig, Settings
from ingestd.delivery import Attempt
from ingestd.errors import ConfigError
from ingestd.model import Job


def resolve(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"handler must look like 'package.module:function', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"handler {target!r} cannot be imported: {exc}") from exc
    if not callable(obj):
        raise ConfigError(f"handler {target!r} is not callable")
    return obj  # type: ignore[no-any-return]


class HandlerDestination:
    """Calls a Python function for each event."""

    def __init__(self, config: DestinationConfig, settings: Settings | None = None) -> None:
        target = config.options().get("handler")
        if not isinstance(target, str):
            raise ConfigError(
                f"destination {config.name!r}: 'handler' (module:function) is required"
            )
        self._fn = resolve(target)
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
