"""Say clearly which services the tests need and whether they answer.

Run by `make test` before pytest. In CI (CI=true) a missing service fails the run;
elsewhere it prints what is missing and the tests that need it are skipped.
"""

from __future__ import annotations

import os
import socket
import sys

SERVICES = {
    "PostgreSQL": (
        "127.0.0.1",
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "Redis": (
        "127.0.0.1",
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
    ),
}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def missing() -> list[str]:
    return [name for name, (host, port, _) in SERVICES.items() if not reachable(host, port)]


def main() -> int:
    gone = missing()
    for name in gone:
        host, port, start = SERVICES[name]
        print(f"services: {name} is not answering at {host}:{port}; start it with: {start}")
    if gone and os.environ.get("CI") == "true":
        print("services: CI=true, so a missing service is a failure")
        return 1
    if not gone:
        print("services: PostgreSQL and Redis answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
