"""Leaves a file behind when imported, and another when its function or class is called:
proof that a `module:attr` sent over HTTP was never imported nor run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_DIR = Path(os.environ.get("INGESTD_TEST_DIR", "."))
(_DIR / "tripwire-imported").write_text("imported\n")


def called(*args: Any) -> None:
    (_DIR / "tripwire-called").write_text("called\n")


class Kind:
    def __init__(self, *args: Any) -> None:
        (_DIR / "tripwire-called").write_text("constructed\n")
