"""Settings: INGESTD_* variables, the TOML file with [[destinations]], validation, masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingestd.config import DEFAULT_RETRY_SCHEDULE, Settings, load_settings, masked
from ingestd.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INGESTD_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_documented_contract() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///./data/ingestd.db"
    assert s.sqlite_synchronous == "FULL"
    assert s.async_ingestion is True
    assert s.max_event_bytes == 64 * 1024
    assert s.max_batch_bytes == 1024 * 1024
    assert s.max_batch == 1000
    assert s.idempotency_ttl == 24 * 3600
    assert tuple(s.retry_schedule) == DEFAULT_RETRY_SCHEDULE
    assert s.destinations == []


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTD_DATABASE_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("INGESTD_ASYNC_INGESTION", "false")
    monkeypatch.setenv("INGESTD_MAX_BATCH", "10")
    monkeypatch.setenv("INGESTD_SQLITE_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("INGESTD_RETRY_SCHEDULE", "[0, 0.1, 0.1]")
    s = load_settings()
    assert s.database_url == "sqlite:////tmp/x.db"
    assert s.async_ingestion is False
    assert s.max_batch == 10
    assert s.sqlite_synchronous == "NORMAL"
    assert s.retry_schedule == [0, 0.1, 0.1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INGESTD_MAX_BATCH", "many"),
        ("INGESTD_SQLITE_SYNCHRONOUS", "OFF"),
        ("INGESTD_ASYNC_INGESTION", "perhaps"),
        ("INGESTD_RETRY_SCHEDULE", "not json"),
    ],
)
def test_invalid_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        load_settings()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ingestd.toml"
    path.write_text(text)
    return path


def test_toml_destinations_with_handler_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        """
[[destinations]]
name = "audit"
kind = "handler"
handler = "handlers.sinks:ok"
event_types = ["order.*", "user.signup"]
retry_schedule = [0, 0.1, 0.1]

[[destinations]]
name = "everything"
kind = "handler"
handler = "handlers.sinks:ok_async"
""",
    )
    monkeypatch.setenv("INGESTD_CONFIG", str(path))
    s = load_settings()
    audit, everything = s.destinations
    assert audit.name == "audit"
    assert audit.kind == "handler"
    assert audit.options() == {"handler": "handlers.sinks:ok"}
    assert audit.event_types == ["order.*", "user.signup"]
    assert audit.retry_schedule == [0, 0.1, 0.1]
    assert everything.event_types == ["*"]
    assert everything.retry_schedule is None
    assert everything.enabled is True


def test_toml_settings_table_and_environment_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[settings]\nmax_batch = 50\nmax_event_bytes = 1000\n")
    monkeypatch.setenv("INGESTD_CONFIG", str(path))
    monkeypatch.setenv("INGESTD_MAX_BATCH", "7")
    s = load_settings()
    assert s.max_batch == 7  # the environment wins over the file
    assert s.max_event_bytes == 1000
    assert load_settings(max_batch=3).max_batch == 3  # explicit overrides win over both


def test_toml_sources_derive_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[sources.billing]\nderive_key = ["type", "subject"]\n')
    monkeypatch.setenv("INGESTD_CONFIG", str(path))
    assert load_settings().sources["billing"].derive_key == ["type", "subject"]


@pytest.mark.parametrize(
    "text",
    [
        "[[destinations]]\nname = 'x'\n",  # kind missing
        "[[destinations]]\nname = 'bad name!'\nkind = 'handler'\n",
        "[[destinations]]\nname = 'x'\nkind = 'handler'\nmax_in_flight = 0\n",
        "[[destinations]]\nname = 'x'\nkind = 'handler'\nretry_schedule = 'soon'\n",
        "[settings]\nmax_batch = 'lots'\n",
        "this is = = not toml",
    ],
)
def test_invalid_toml_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("INGESTD_CONFIG", str(write(tmp_path, text)))
    with pytest.raises(ConfigError):
        load_settings()


def test_missing_config_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="INGESTD_CONFIG"):
        load_settings()


def test_masking_hides_secrets_and_url_credentials() -> None:
    dump = Settings(database_url="postgresql://app:hunter2@db:5432/ingestd").model_dump(mode="json")
    dump["destinations"] = [{"name": "w", "secret": "whsec_abc", "api_key": "", "url": "x"}]
    shown = masked(dump)
    text = repr(shown)
    assert "hunter2" not in text
    assert "whsec_abc" not in text
    assert shown["database_url"] == "postgresql://***@db:5432/ingestd"
    assert shown["destinations"][0]["secret"] == "***"
    assert shown["destinations"][0]["api_key"] == ""  # nothing to hide
    assert shown["destinations"][0]["url"] == "x"


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("INGESTD_WEBHOOK_ALLOW_NETS", "127.0.0.0/8", "webhook_allow_nets", ["127.0.0.0/8"]),
        (
            "INGESTD_WEBHOOK_ALLOW_NETS",
            " 127.0.0.0/8, 10.0.0.0/8 ,",
            "webhook_allow_nets",
            ["127.0.0.0/8", "10.0.0.0/8"],
        ),
        ("INGESTD_WEBHOOK_ALLOW_NETS", '["::1/128"]', "webhook_allow_nets", ["::1/128"]),
        ("INGESTD_WEBHOOK_ALLOW_NETS", "", "webhook_allow_nets", []),
        ("INGESTD_RETRY_SCHEDULE", "0,5,300", "retry_schedule", [0.0, 5.0, 300.0]),
        ("INGESTD_AUTH_OPEN_PATHS", "/health,/ready", "auth_open_paths", ["/health", "/ready"]),
    ],
)
def test_list_settings_take_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str, expected: list[object]
) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), field) == expected


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("INGESTD_RETRY_SCHEDULE", "0,soon", "INGESTD_RETRY_SCHEDULE item 2: "),
        ("INGESTD_RETRY_SCHEDULE", "[0, 5", "INGESTD_RETRY_SCHEDULE: not a valid JSON list"),
        ("INGESTD_WEBHOOK_ALLOW_NETS", '["a", 1', "INGESTD_WEBHOOK_ALLOW_NETS: not a valid"),
        ("INGESTD_MAX_BATCH", "many", "INGESTD_MAX_BATCH: Input should be a valid integer"),
        ("INGESTD_DESTINATIONS", "nope", "INGESTD_DESTINATIONS: not valid JSON"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_format(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert says in message
    if name in ("INGESTD_RETRY_SCHEDULE", "INGESTD_WEBHOOK_ALLOW_NETS"):
        assert "comma-separated list (a,b,c) or a JSON list" in message


def test_a_bad_key_is_named_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTD_API_KEYS", "tooshort-secret")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "INGESTD_API_KEYS[0].key" in str(raised.value)
    assert "tooshort-secret" not in str(raised.value)
