"""MkDocs hooks (mkdocs.yml `hooks:`): generated pages, and a nav that lists only what exists.

Other engineers' pages (operations, reliability, architecture, console) appear in the nav
once their files are in docs/; until then their entries are dropped instead of breaking
`mkdocs build --strict`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))

import reference

ROOT = Path(__file__).parents[2]
GENERATED = {
    "reference/configuration.md": reference.configuration_markdown,
    "reference/cli.md": reference.cli_markdown,
    "reference/openapi.json": lambda: json.dumps(reference.openapi_document(), indent=2),
    "reference/http-api.md": reference.http_api_markdown,
    "benchmarks.md": lambda: benchmarks_markdown(ROOT / "benchmarks" / "RESULTS.md"),
}
LINK = re.compile(r"\[([^\]]+)\]\((?!https?:|#|mailto:)([^)]+)\)")


def benchmarks_markdown(results: Path) -> str:
    """benchmarks/RESULTS.md as a page; its links to files beside it become repo paths."""
    if not results.exists():
        return "# Benchmarks\n\nNo results recorded yet (`benchmarks/RESULTS.md`).\n"
    text = results.read_text()
    return LINK.sub(lambda m: f"{m[1]} (`benchmarks/{m[2]}`)", text)


def exists(entry: str, docs_dir: Path) -> bool:
    return entry in GENERATED or (docs_dir / entry).is_file()


def pruned(nav: Any, docs_dir: Path) -> Any:
    """The nav without the pages that are not there (sections left empty go too)."""
    kept = []
    for item in nav:
        if isinstance(item, str):
            if exists(item, docs_dir):
                kept.append(item)
            continue
        ((title, value),) = item.items()
        if isinstance(value, list):
            value = pruned(value, docs_dir)
            if value:
                kept.append({title: value})
        elif value.startswith(("http://", "https://")) or exists(value, docs_dir):
            kept.append({title: value})
    return kept


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if config.nav:
        config.nav = pruned(config.nav, Path(config.docs_dir))
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path, make in GENERATED.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=make()))
    return files
