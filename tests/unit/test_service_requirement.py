"""The service fixtures: in CI (CI=true) an unreachable PostgreSQL or Redis fails the test
that needs it; elsewhere it is skipped with the reason."""

from __future__ import annotations

import pytest

import services
from support import free_port


@pytest.fixture
def nothing_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # bound and released: connections are refused
    monkeypatch.setitem(services.SERVICES, "PostgreSQL", ("127.0.0.1", port, "start it"))


@pytest.mark.usefixtures("nothing_listening")
def test_in_ci_an_unreachable_service_is_a_failure(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("CI", "true")
    # Caught as BaseException: a skip must not pass for a failure (nor the reverse).
    with pytest.raises(BaseException, match="PostgreSQL is not reachable") as raised:
        request.getfixturevalue("pg_url")
    assert raised.type is pytest.fail.Exception


@pytest.mark.usefixtures("nothing_listening")
def test_outside_ci_an_unreachable_service_is_a_skip(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.delenv("CI", raising=False)
    # Caught as BaseException: a skip must not pass for a failure (nor the reverse).
    with pytest.raises(BaseException, match="PostgreSQL is not reachable") as raised:
        request.getfixturevalue("pg_url")
    assert raised.type is pytest.skip.Exception


def test_services_check_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(services.SERVICES, "PostgreSQL", ("127.0.0.1", free_port(), "start"))
    monkeypatch.setenv("CI", "true")
    assert services.main() == 1
    assert "PostgreSQL is not answering" in capsys.readouterr().out
