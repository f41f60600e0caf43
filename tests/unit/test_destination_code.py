"""Which Python a destination may name (issue 14 item 3): decided before any import."""

from __future__ import annotations

import sys

import pytest

from ingestd.config import DestinationConfig, load_settings
from ingestd.destinations import build_destination, load_kind
from ingestd.errors import ConfigError


def test_an_unconfigured_target_is_refused_without_importing_it() -> None:
    settings = load_settings(database_url="sqlite:///:memory:")
    assert "xml.dom.minidom" not in sys.modules
    with pytest.raises(ConfigError, match="unknown destination kind"):
        load_kind("xml.dom.minidom:Node", settings)
    config = DestinationConfig(name="h", kind="handler", handler="xml.dom.minidom:parse")
    with pytest.raises(ConfigError, match="not allowed"):
        build_destination(config, settings)
    assert "xml.dom.minidom" not in sys.modules


def test_allowed_modules_and_targets() -> None:
    settings = load_settings(
        database_url="sqlite:///:memory:",
        handler_allow=["json", "string:capwords"],
        destination_kinds={"noop": "ingestd.destinations.inbox:InboxDestination"},
    )
    build_destination(DestinationConfig(name="a", kind="handler", handler="json:dumps"), settings)
    build_destination(
        DestinationConfig(name="b", kind="handler", handler="string:capwords"), settings
    )
    with pytest.raises(ConfigError, match="not allowed"):
        build_destination(
            DestinationConfig(name="c", kind="handler", handler="string:Template"), settings
        )
    assert load_kind("noop", settings).__name__ == "InboxDestination"


@pytest.mark.parametrize(
    "bad",
    [["os system"], ["os:"], [":system"], ["os:system\n"], ["münchen:x"], ["a..b"]],
)
def test_allow_list_entries_must_be_python_names(bad: list[str]) -> None:
    with pytest.raises(ConfigError, match="INGESTD_HANDLER_ALLOW"):
        load_settings(database_url="sqlite:///:memory:", handler_allow=bad)


def test_kind_targets_must_be_module_and_class() -> None:
    with pytest.raises(ConfigError, match="INGESTD_DESTINATION_KINDS"):
        load_settings(database_url="sqlite:///:memory:", destination_kinds={"k": "nocolon"})
