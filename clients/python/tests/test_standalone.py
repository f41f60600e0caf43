"""The SDK loads without the server or any of its dependencies."""

from __future__ import annotations

import subprocess
import sys

SERVER = ("ingestd", "fastapi", "uvicorn", "aiohttp", "aiosmtplib", "jinja2", "prometheus_client")

PROBE = """
import pkgutil, sys
import ingestd_client
for info in pkgutil.walk_packages(ingestd_client.__path__, "ingestd_client."):
    __import__(info.name)
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_importing_every_module_loads_no_server_package() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert "ingestd_client" in loaded and "msgspec" in loaded
    assert loaded.isdisjoint(SERVER), loaded & set(SERVER)
