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
STATIC = frozenset(GENERATED)
"""Always generated; the others (the console page) depend on what docs/ holds."""
LINK = re.compile(r"\[([^\]]+)\]\((?!https?:|#|mailto:)([^)]+)\)")
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def benchmarks_markdown(results: Path) -> str:
    """benchmarks/RESULTS.md as a page; its links to files beside it become repo paths."""
    if not results.exists():
        return "# Benchmarks\n\nNo results recorded yet (`benchmarks/RESULTS.md`).\n"
    text = results.read_text()
    return LINK.sub(lambda m: f"{m[1]} (`benchmarks/{m[2]}`)", text)


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def readme_link(match: re.Match[str]) -> str:
    """A README link, as the docs site can hold it: docs/ pages and the benchmark results
    become site links (an anchor kept only if the page has it); other files, repo paths."""
    text, target = match[1], match[2]
    path, _, anchor = target.partition("#")
    if path.startswith("docs/"):
        return f"[{text}]({path.removeprefix('docs/')}{'#' + anchor if anchor else ''})"
    if path == "benchmarks/RESULTS.md":
        headings = {slug(h) for h in re.findall(r"^#+ (.+)$", RESULTS.read_text(), re.M)}
        return f"[{text}](benchmarks.md{'#' + anchor if anchor in headings else ''})"
    return f"{text} (`{target}`)"


def readme_section(title: str) -> str:
    """One `## title` section of the README as a page (the README stays its one source)."""
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    body = text[start + 3 : end if end != -1 else None]
    return "# " + LINK.sub(readme_link, body).strip() + "\n"


def console_page(docs_dir: Path) -> dict[str, Any]:
    """The console's README section, until the console has a docs page of its own."""
    if (docs_dir / "console.md").exists() or (docs_dir / "console" / "index.md").exists():
        return {}
    if "## Console\n" not in README.read_text():
        return {}
    return {"console.md": lambda: readme_section("Console")}


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
    for path in [p for p in GENERATED if p not in STATIC]:
        del GENERATED[path]
    GENERATED.update(console_page(Path(config.docs_dir)))
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
