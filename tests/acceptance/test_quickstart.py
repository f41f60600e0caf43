"""docs/quickstart.md, run as written: a verified webhook, an email in a real SMTP server,
an event pulled from the inbox and the handler's log line, with each receiver."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from docs_commands import DONE, ROOT, run_page
from support import free_port

PAGE = ROOT / "docs" / "quickstart.md"
CONFIG = "examples/quickstart/ingestd.toml"

pytestmark = pytest.mark.xdist_group("pages-in-the-checkout")  # as tests/acceptance/test_examples


@pytest.mark.parametrize(
    "tab",
    [
        "Python",
        pytest.param(
            "Node",
            marks=pytest.mark.skipif(shutil.which("node") is None, reason="node missing"),
        ),
    ],
)
def test_quickstart_page_runs_as_written(tmp_path: Path, tab: str) -> None:
    ports = {"8000": str(free_port()), "9000": str(free_port()), "8025": str(free_port())}
    config = (ROOT / CONFIG).read_text()
    for old, new in ports.items():
        config = config.replace(old, new)
    (tmp_path / "ingestd.toml").write_text(config)
    # `make run` serves on $(PORT) (default 8000) and the database of INGESTD_DATABASE_URL.
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/ingestd.db", "PORT": ports["8000"]}
    replace = {**ports, CONFIG: str(tmp_path / "ingestd.toml")}
    with run_page(PAGE, tmp_path, tab=tab, replace=replace, env=env) as page:
        out = page.wait_for(DONE, timeout=90)
        assert page.proc.poll() is None, f"a command failed:\n{out[-4000:]}"
        # The webhook: verified by the receiver with the official library.
        assert "verified msg_" in out
        verified = next(line for line in out.splitlines() if line.startswith("verified msg_"))
        assert '"order.paid"' in verified and '"o-1"' in verified
        assert "forged request: 401" in out
        assert "REJECTED" in out  # ... and the receiver said why
        # The email, as the SMTP server received it, rendered from the templates.
        assert "To: ada@example.com" in out
        assert "Subject: Order o-1: 42 EUR received" in out
        assert "Hello Ada," in out
        # The inbox, pulled and acknowledged; the handler's log line.
        assert "(attempt 1): order.paid o-1" in out
        assert "acked 1" in out
        assert "audit: order.paid o-1 from shop" in out
        assert '"status":"completed"' in out.replace(" ", "")
