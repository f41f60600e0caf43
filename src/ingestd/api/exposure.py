"""Safe by default: without API keys, serve only on loopback unless the operator says so.

Without keys every route is open, and the admin API configures destinations: whoever can
reach the port can read every event and send them anywhere. So an unauthenticated server
refuses a non-loopback address unless INGESTD_ALLOW_UNAUTHENTICATED (or the flag
`--allow-unauthenticated`) is set, and always logs a warning at start.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from ingestd.config import Settings
from ingestd.errors import ConfigError

log = logging.getLogger("ingestd.api")


def loopback_only(host: str) -> bool:
    """Every address `host` names is a loopback address (a name is resolved)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # uvicorn will fail to bind it anyway; do not vouch for it
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def check_exposure(settings: Settings, host: str, *, stored_keys: bool = False) -> None:
    """Refuse (ConfigError) or warn about serving without API keys on `host` (`stored_keys`:
    the store holds keys made by `ingestd keys create`, which turn authentication on)."""
    if settings.api_keys or stored_keys:
        return
    if loopback_only(host):
        log.warning(
            "no API keys configured (INGESTD_API_KEYS or [[api_keys]]): every route, the "
            "admin API included, is open to anyone who can reach %s; fine for development "
            "on this machine only",
            host,
        )
        return
    if not settings.allow_unauthenticated:
        raise ConfigError(
            f"refusing to serve on {host}, which is not a loopback address, without API "
            "keys: anyone reaching it could read every event and configure destinations. "
            "Configure API keys (INGESTD_API_KEYS or [[api_keys]] in INGESTD_CONFIG), or "
            "serve on 127.0.0.1 behind your own authentication, or, if the network itself "
            "is trusted, say so with --allow-unauthenticated (INGESTD_ALLOW_UNAUTHENTICATED"
            "=true)"
        )
    log.warning(
        "no API keys configured and INGESTD_ALLOW_UNAUTHENTICATED is set: serving %s with "
        "every route, the admin API included, open to anyone who can reach it",
        host,
    )
