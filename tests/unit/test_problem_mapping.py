"""Core exceptions say what went wrong; the HTTP layer alone says how it is answered."""

from __future__ import annotations

import inspect

import pytest

from ingestd import errors
from ingestd.api.problems import ANSWERS, answer_for

CORE_ERRORS = [
    cls
    for cls in vars(errors).values()
    if inspect.isclass(cls) and issubclass(cls, errors.IngestdError)
]


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_core_exceptions_carry_no_http_status(cls: type[errors.IngestdError]) -> None:
    assert not hasattr(cls, "status")
    assert not hasattr(cls, "status_code")


@pytest.mark.parametrize(
    ("exc", "status", "slug"),
    [
        (errors.MalformedBody("x"), 400, "malformed-json"),
        (errors.InvalidEvent("x", field="type"), 422, "invalid-event"),
        (errors.InvalidCursor(), 400, "invalid-cursor"),
        (errors.InvalidDestination("x"), 422, "invalid-destination"),
        (errors.InvalidSelection(), 422, "invalid-selection"),
        (errors.DestinationNotFound("x"), 404, "destination-not-found"),
        (errors.DeadLetterNotFound("x"), 404, "dead-letter-not-found"),
        (errors.DestinationExists("x"), 409, "destination-exists"),
        (errors.Overloaded(), 503, "overloaded"),
        (errors.StoreUnavailable(), 503, "store-unavailable"),
        (errors.OutcomeUnknown(), 503, "outcome-unknown"),
    ],
)
def test_each_error_has_its_answer(exc: errors.IngestdError, status: int, slug: str) -> None:
    assert answer_for(exc) == (status, slug)


def test_a_subclass_is_answered_as_its_nearest_listed_base() -> None:
    class Gone(errors.DestinationNotFound):
        pass

    assert answer_for(Gone("x")) == (404, "destination-not-found")


@pytest.mark.parametrize(
    "exc", [errors.ConfigError("x"), errors.SchemaTooNew(), RuntimeError("x")], ids=repr
)
def test_what_is_not_the_clients_fault_is_a_500(exc: BaseException) -> None:
    assert answer_for(exc) == (500, "internal")


def test_every_mapped_class_is_a_core_error() -> None:
    assert all(issubclass(cls, errors.IngestdError) for cls in ANSWERS)
