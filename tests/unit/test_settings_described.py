"""Every setting carries its description: the configuration reference is generated from it."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from ingestd.config import ApiKeyConfig, DestinationConfig, Settings, SourceConfig


@pytest.mark.parametrize("model", [Settings, DestinationConfig, ApiKeyConfig, SourceConfig])
def test_every_setting_has_a_description(model: type[BaseModel]) -> None:
    undescribed = [
        name
        for name, field in model.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert undescribed == [], (
        f"{model.__name__}: give these a docstring under the field (it becomes the "
        f"description in docs/reference/configuration.md): {undescribed}"
    )


def test_a_setting_without_a_docstring_is_caught() -> None:
    class Probe(Settings):
        new_setting: int = 1

    assert Probe.model_fields["new_setting"].description is None
    assert Settings.model_fields["max_batch"].description  # docstrings are read
