"""docs/architecture.md has a line for every module under src/ingestd, so the map of the
code cannot fall behind it (packages documented as a whole are named once)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "ingestd"
AS_A_WHOLE = ("client/", "bench/", "api/console/")
"""Packages the page names in one line."""


def modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if path.name != "__init__.py" and not name.startswith(AS_A_WHOLE):
            found.append(name)
    return found


def mentioned(name: str, lines: list[str]) -> bool:
    """Named in full, or by file name on a line that names its folder (`a/b.py`, `c.py`)."""
    folder, _, file = name.rpartition("/")
    if any(name in line for line in lines):
        return True
    return any(f"`{file}`" in line and f"{folder}/" in line for line in lines) if folder else False


def test_every_module_has_a_line() -> None:
    lines = (ROOT / "docs" / "architecture.md").read_text().splitlines()
    assert [m for m in modules() if not mentioned(m, lines)] == []


def test_a_module_missing_from_the_page_is_found() -> None:
    lines = ["| `store/sqlite/store.py`, `driver.py` | SQLite |", "| `admin.py` | admin |"]
    assert mentioned("store/sqlite/driver.py", lines)
    assert mentioned("admin.py", lines)
    assert not mentioned("store/postgres/driver.py", lines)
    assert not mentioned("routing.py", lines)
