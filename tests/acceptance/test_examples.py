"""examples/*/README.md, run as written: each application's event reaches ingestd."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from docs_commands import DONE, ROOT, run_page
from support import free_port

EXAMPLES = ROOT / "examples"


def events_printed(out: str, source: str) -> list[dict[str, object]]:
    """The events of the page's `GET /events?source=…` answer."""
    pages = [json.loads(line) for line in out.splitlines() if line.startswith('{"events":')]
    assert pages, f"no GET /events answer printed:\n{out[-3000:]}"
    return [e for e in pages[-1]["events"] if e["source"] == source]


def run_app_example(tmp_path: Path, name: str) -> str:
    ports = {"8000": str(free_port()), "8080": str(free_port())}
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/ingestd.db", "PORT": ports["8000"]}
    with run_page(EXAMPLES / name / "README.md", tmp_path, replace=ports, env=env) as page:
        out = page.wait_for(DONE, timeout=100)
        assert page.proc.poll() is None, f"a command failed:\n{out[-4000:]}"
        return out


def test_fastapi_app_emits_through_the_python_sdk(tmp_path: Path) -> None:
    out = run_app_example(tmp_path, "fastapi-app")
    created = next(json.loads(line) for line in out.splitlines() if line.startswith('{"id":"ord-'))
    [event] = events_printed(out, "orders")
    assert event["id"] == created["id"]
    assert event["type"] == "order.created"
    assert event["data"] == {"sku": "book-42", "quantity": 2, "email": "ada@example.com"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node missing")
def test_node_app_emits_through_the_typescript_sdk(tmp_path: Path) -> None:
    out = run_app_example(tmp_path, "node-app")
    created = next(json.loads(line) for line in out.splitlines() if line.startswith('{"id":"usr-'))
    [event] = events_printed(out, "accounts")
    assert event["id"] == created["id"]
    assert event["type"] == "user.signed_up"
    assert event["data"] == {"email": "grace@example.com", "plan": "team"}
