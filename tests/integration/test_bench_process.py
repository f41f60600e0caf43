"""The harness's IngestdProcess: a process that never becomes ready is stopped when the
wait gives up, not left running (it would hold its port and database for later runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ingestd.bench.process import IngestdProcess, ProcessFailed


def test_a_process_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    # Stands in for an `ingestd serve` that never answers /ready: it ignores its arguments.
    never = [sys.executable, "-c", "import time; time.sleep(120)"]
    proc = IngestdProcess("serve", log=tmp_path / "serve.log", executable=never)
    proc.launch()
    try:
        with pytest.raises(ProcessFailed, match=r"not ready after 0\.5 s"):
            proc.wait_until_ready(timeout=0.5)
        assert proc.proc is not None and proc.proc.poll() is not None  # stopped
    finally:
        proc.kill()
