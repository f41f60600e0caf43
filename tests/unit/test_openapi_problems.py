"""The OpenAPI document declares what the server answers (issue 14 item 13): the problem
answers on every operation, problem+json only, and /metrics as text."""

from __future__ import annotations

from ingestd.api.app import IngestdApp
from ingestd.api.openapi import PROBLEMS
from ingestd.config import load_settings


def document() -> dict:  # type: ignore[type-arg]
    return IngestdApp(load_settings(database_url="sqlite:///:memory:")).framework.openapi()


def test_every_operation_declares_the_problem_answers() -> None:
    operations = [
        (path, method, op)
        for path, item in document()["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) > 15
    for path, method, op in operations:
        for status in PROBLEMS:
            content = op["responses"][str(status)]["content"]
            assert list(content) == ["application/problem+json"], (path, method, status)


def test_metrics_is_text_and_no_json_validation_error_is_declared() -> None:
    doc = document()
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "Problem" in doc["components"]["schemas"]
