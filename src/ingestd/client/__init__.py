"""Deprecated: the Python SDK is its own distribution, `ingestd-client` (`import ingestd_client`).

This re-export keeps `from ingestd.client import Client` working for one release (it is
removed in ingestd 0.3). It warns once, at import. Two things differ from the SDK that
lived here: its exceptions no longer derive from `ingestd.errors.IngestdError`, and the
modules below the package (`ingestd.client.policy` …) are gone — import them from
`ingestd_client`.
"""

import warnings

# stacklevel 2 is the importing line: warnings.warn skips importlib's own frames, so
# the default filters (DeprecationWarning shown for __main__'s code) let a user see it.
warnings.warn(
    "ingestd.client is deprecated and will be removed in ingestd 0.3: "
    "pip install ingestd-client (clients/python) and import ingestd_client instead",
    DeprecationWarning,
    stacklevel=2,
)

try:
    from ingestd_client import (
        AsyncClient,
        Client,
        ClientClosed,
        ClientError,
        DropCallback,
        DropReason,
        EventRejected,
        RetryPolicy,
        SendFailed,
        SendResult,
        Stats,
        new_event_id,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - the message is the point
    if exc.name != "ingestd_client":
        raise
    raise ModuleNotFoundError(
        "ingestd.client now re-exports the separate ingestd-client package, which is not "
        "installed: pip install ./clients/python (from the ingestd repository)",
        name="ingestd_client",
    ) from exc

__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "ClientError",
    "DropCallback",
    "DropReason",
    "EventRejected",
    "RetryPolicy",
    "SendFailed",
    "SendResult",
    "Stats",
    "new_event_id",
]
