"""schemathesis over /openapi.json against a real `ingestd serve` (issue 14 item 13): for
every operation, a bounded number of generated requests (valid and invalid), each checked
for no 5xx and for a status code, content type, headers and body the description
declares.

The description is read from the app at collection (schemathesis's lazy fixture loader
does not work with this pytest); a test then fetches the served /openapi.json and checks
it is the same document, so what is fuzzed is what the server publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from ingestd.api.app import IngestdApp
from ingestd.config import load_settings
from support import ServerProcess, running_server

# schemathesis gives every operation's test one node id, and xdist would run only one of
# them: `make test` runs these in its serial part.
pytestmark = pytest.mark.serial

EXAMPLES = 10
"""Generated requests per operation: bounded so the suite stays quick."""


def description() -> dict[str, Any]:
    app = IngestdApp(load_settings(database_url="sqlite:///:memory:"))
    document: dict[str, Any] = app.framework.openapi()
    return document


LENIENT = [checks.positive_data_acceptance, checks.negative_data_rejection]
"""Not run: whether ingestd takes every request the schema allows and refuses every one
it does not. It validates more than a schema can say (an opaque cursor, an RFC 3339 time
in range, an id unique per tenant), and a batch answers each item in its 207 rather than
refusing the whole. What is checked: no 5xx, and every status code, content type, header
and body as declared."""

DOCUMENT = description()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    with running_server(tmp) as proc:
        yield proc


def test_the_fuzzed_description_is_the_served_one(served: ServerProcess) -> None:
    assert httpx.get(f"{served.url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_as_described(case: Any, served: ServerProcess) -> None:
    excluded = list(LENIENT)
    if case.path.startswith("/keys"):
        # Key management asks for a key before anything else, even with none configured:
        # an undeclared method there is a 401 (declared), not a 405.
        excluded.append(checks.unsupported_method)
    case.call_and_validate(base_url=served.url, timeout=30, excluded_checks=excluded)
