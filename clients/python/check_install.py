"""Run in a fresh venv right after `pip install ./clients/python`: only the SDK arrived.

Exits non-zero, naming them, if any distribution beyond ingestd-client, msgspec and the
venv's own installers is present, or if any server dependency is importable.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import distributions

ALLOWED = {"ingestd-client", "msgspec", "pip", "setuptools", "wheel"}
SERVER = ("ingestd", "fastapi", "uvicorn", "aiohttp", "aiosmtplib", "jinja2", "prometheus_client")


def main() -> int:
    names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in distributions()}
    extra = sorted(names - ALLOWED)
    importable = [m for m in SERVER if importlib.util.find_spec(m) is not None]
    if "ingestd-client" not in names or extra or importable:
        print(f"installed beyond the SDK: {extra}; importable server modules: {importable}")
        return 1
    print(f"installed alone: {sorted(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
