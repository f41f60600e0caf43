"""`import ingestd.client` still works for one release: the separate SDK, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import ingestd_client
from ingestd.errors import IngestdError


def test_the_old_import_warns_and_gives_the_same_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ingestd.client", raising=False)
    with pytest.warns(DeprecationWarning, match="import ingestd_client instead"):
        old = importlib.import_module("ingestd.client")
    assert set(old.__all__) == set(ingestd_client.__all__) - {"__version__"}
    for name in old.__all__:
        assert getattr(old, name) is getattr(ingestd_client, name)


def test_the_warning_points_at_the_importing_line() -> None:
    # Python's default filters show a DeprecationWarning only when it is attributed to
    # __main__'s code: run with none of pytest's filters.
    done = subprocess.run(
        [sys.executable, "-c", "import ingestd.client"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "<string>:1: DeprecationWarning: ingestd.client is deprecated" in done.stderr


def test_client_errors_are_no_longer_server_errors() -> None:
    assert not issubclass(ingestd_client.ClientError, IngestdError)
    assert issubclass(ingestd_client.SendFailed, ingestd_client.ClientError)
