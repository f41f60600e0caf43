"""`ingestd.__all__` is curated: it lists exactly the public members of the package."""

from __future__ import annotations

import inspect

import ingestd


def public_members() -> list[str]:
    return [
        name
        for name, value in vars(ingestd).items()
        # Submodules become attributes of the package when imported; they are not exports.
        if not inspect.ismodule(value)
        and (not name.startswith("_") or name == "__version__")
        and name not in ("annotations",)
    ]


def test_all_lists_every_public_member() -> None:
    assert sorted(ingestd.__all__) == sorted(public_members())


def test_all_has_no_duplicates() -> None:
    assert len(ingestd.__all__) == len(set(ingestd.__all__))


def test_every_export_exists_and_comes_from_ingestd() -> None:
    for name in ingestd.__all__:
        value = getattr(ingestd, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("ingestd."), name


def test_version_is_a_string() -> None:
    assert isinstance(ingestd.__version__, str)
    assert ingestd.__version__.count(".") >= 1


def test_exports_what_handler_and_destination_authors_need() -> None:
    for name in ("Job", "Attempt", "Destination", "Event", "IngestdError"):
        assert name in ingestd.__all__, name


def test_internals_are_not_exported() -> None:
    for name in ("AcceptOutcome", "OutcomeKind", "Submission", "Runtime", "Store"):
        assert name not in ingestd.__all__, name
        assert not hasattr(ingestd, name), name
