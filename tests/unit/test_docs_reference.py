"""The generated reference pages are complete: every setting, every command, the API the
server serves (tools/docgen/reference.py, built into the site by `mkdocs build --strict`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "tools" / "docgen"))

import reference

from ingestd.cli import parser
from ingestd.config import ApiKeyConfig, DestinationConfig, Settings


def test_configuration_reference_lists_every_setting_with_its_meaning() -> None:
    page = reference.configuration_markdown()
    for name, field in Settings.model_fields.items():
        if name in reference.TOML_ONLY:
            continue
        row = next(
            line for line in page.splitlines() if line.startswith(f"| `INGESTD_{name.upper()}`")
        )
        assert field.description and " ".join(field.description.split())[:40] in row
    for model in (DestinationConfig, ApiKeyConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in page, f"{model.__name__}.{name} missing"


def test_configuration_reference_shows_types_and_defaults() -> None:
    page = reference.configuration_markdown()
    assert '| `INGESTD_SQLITE_SYNCHRONOUS` | "FULL" \\| "NORMAL" | `"FULL"` |' in page
    assert "| `INGESTD_MAX_BATCH` | int | `1000` |" in page
    assert "| `INGESTD_CONFIG` | Path \\| none | — |" in page


def every_command(p: argparse.ArgumentParser, prefix: str = "ingestd") -> list[str]:
    names = []
    for name, _help, sub in reference.subcommands(p):
        names.append(f"{prefix} {name}")
        names += every_command(sub, f"{prefix} {name}")
    return names


def test_cli_reference_covers_every_command_and_option() -> None:
    page = reference.cli_markdown()
    commands = every_command(parser())
    assert "ingestd backup" in commands and "ingestd dlq replay" in commands
    for command in commands:
        assert f"`{command}`" in page, command
    for _name, _help, sub in reference.subcommands(parser()):
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in page, option


def test_http_api_page_is_rendered_from_the_served_document() -> None:
    spec = reference.openapi_document()
    page = reference.http_api_markdown()
    for path, operations in spec["paths"].items():
        shown = re.sub(r"(\{\w+\})", r'<span class="route-param">\1</span>', path)
        for method in operations:
            assert f'<span class="http-{method}">{method.upper()}</span> {shown}' in page


def test_nav_keeps_only_pages_that_exist(tmp_path: Path) -> None:
    import hooks

    (tmp_path / "here.md").write_text("# here")
    nav = [
        {"Here": "here.md"},
        {"Not yet": "operations.md"},
        {"Section": [{"Gone": "gone.md"}]},
        {"Generated": "reference/cli.md"},
        {"Away": "https://example.com/"},
    ]
    assert hooks.pruned(nav, tmp_path) == [
        {"Here": "here.md"},
        {"Generated": "reference/cli.md"},
        {"Away": "https://example.com/"},
    ]


def test_readme_sections_link_into_the_site() -> None:
    import hooks

    text = "[a](docs/quickstart.md) [b](docs/console/x.png) [c](deploy/systemd/README.md#x)"
    linked = hooks.LINK.sub(hooks.readme_link, text)
    assert linked == "[a](quickstart.md) [b](console/x.png) c (`deploy/systemd/README.md#x`)"
    assert hooks.LINK.sub(hooks.readme_link, "[r](benchmarks/RESULTS.md#no-such)") == (
        "[r](benchmarks.md)"
    )


def test_every_cli_argument_says_what_it_does() -> None:
    """The CLI reference's 'meaning' column comes from `help=`: none may be empty."""

    def silent(p: argparse.ArgumentParser, path: str) -> list[str]:
        found = [
            f"{path} {(a.option_strings or [a.dest])[0]}"
            for a in p._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
            and not (a.help and a.help.strip())
        ]
        for name, _help, sub in reference.subcommands(p):
            found += silent(sub, f"{path} {name}")
        return found

    assert silent(parser(), "ingestd") == []


def test_cli_reference_never_shows_a_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INGESTD_API_KEY", "sk-live-do-not-print-me")
    assert "sk-live-do-not-print-me" not in reference.cli_markdown()
