"""The `ingestd` command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from support import ServerProcess, free_port, handler_env, run_cli, wait_for


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("serve", "api", "worker", "migrate", "drain", "status", "config", "send"):
        assert name in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    env = {
        "INGESTD_DATABASE_URL": "postgresql://app:hunter2@db.internal:5432/ingestd",
        "INGESTD_MAX_BATCH": "50",
    }
    result = run_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["max_batch"] == 50
    assert "hunter2" not in result.stdout
    assert shown["database_url"].endswith("@db.internal:5432/ingestd")


def test_config_shows_toml_destinations(tmp_path: Path) -> None:
    env = handler_env(
        tmp_path,
        [{"name": "audit", "kind": "handler", "handler": "handlers.sinks:ok", "secret": "s3"}],
    )
    result = run_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    [dest] = json.loads(result.stdout)["destinations"]
    assert dest["name"] == "audit"
    assert dest["secret"] == "***"


def test_invalid_settings_are_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("config", env={"INGESTD_MAX_BATCH": "lots"})
    assert result.returncode != 0
    assert result.stderr.startswith("ingestd: ")
    assert "INGESTD_MAX_BATCH" in result.stderr  # the variable, as the user wrote it
    assert "Traceback" not in result.stderr


def test_unreadable_config_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[destinations]\nname=")
    for env in ({"INGESTD_CONFIG": str(bad)}, {"INGESTD_CONFIG": str(tmp_path / "none.toml")}):
        result = run_cli("config", env=env)
        assert result.returncode != 0
        assert "INGESTD_CONFIG" in result.stderr
        assert "Traceback" not in result.stderr


async def test_unknown_handler_is_named_in_the_log_and_the_status(tmp_path: Path) -> None:
    env = handler_env(
        tmp_path, [{"name": "x", "kind": "handler", "handler": "handlers.nope:missing"}]
    )
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.post("/ingest", json={"source": "s", "id": "u-1"})).status_code == 202

            async def tried() -> dict[str, object] | None:
                body: dict[str, object] = (await c.get("/ingest/u-1/status")).json()
                return body if body["last_error"] else None

            status = await wait_for(tried)
        # Not lost and not silently dropped: retried, with an error that says what is wrong.
        assert status["status"] in ("failed", "dead")
        assert "handlers.nope:missing" in str(status["last_error"])
        assert "handlers.nope:missing" in server.logs()
    finally:
        await server.stop()


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "ingestd.db"
    result = run_cli("migrate", env={"INGESTD_DATABASE_URL": f"sqlite:///{path}"})
    assert result.returncode == 0, result.stderr
    assert "migrated" in result.stdout
    assert path.exists()


async def test_send_status_and_prune_against_a_running_server(tmp_path: Path) -> None:
    env = handler_env(
        tmp_path, [{"name": "audit", "kind": "handler", "handler": "handlers.sinks:ok"}]
    )
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    db_env = {**env, "INGESTD_DATABASE_URL": server.database_url}
    try:
        sent = run_cli(
            "send",
            "--url",
            server.url,
            "--source",
            "cli",
            "--type",
            "user.signup",
            "--id",
            "cli-1",
            "--data",
            '{"email": "a@example.com"}',
        )
        assert sent.returncode == 0, sent.stderr
        status_code, _, body = sent.stdout.partition(" ")
        assert status_code == "202"
        assert json.loads(body)["id"] == "cli-1"

        again = run_cli("send", "--url", server.url, "--source", "cli", "--id", "cli-1")
        assert again.returncode != 0  # same id, another payload: 422
        assert again.stderr.startswith("422")

        async with httpx.AsyncClient(base_url=server.url) as c:

            async def completed() -> bool:
                r = await c.get("/ingest/cli-1/status")
                return bool(r.json()["status"] == "completed")

            await wait_for(completed)

        status = run_cli("status", "cli-1", env=db_env)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["status"] == "completed"
        assert report["destinations"][0]["destination"] == "audit"

        missing = run_cli("status", "no-such-event", env=db_env)
        assert missing.returncode == 1
        assert "no-such-event" in missing.stderr

        pruned = run_cli("prune", env=db_env)
        assert pruned.returncode == 0, pruned.stderr
        assert set(json.loads(pruned.stdout)) >= {"events", "dead", "keys"}
    finally:
        await server.stop()


def test_send_refuses_a_non_http_url() -> None:
    result = run_cli("send", "--url", "file:///etc/passwd", "--source", "x")
    assert result.returncode == 2
    assert "http" in result.stderr


async def test_api_and_worker_as_separate_processes(tmp_path: Path) -> None:
    """`ingestd api` only accepts; `ingestd worker` on the same database processes."""
    env = handler_env(
        tmp_path, [{"name": "audit", "kind": "handler", "handler": "handlers.sinks:ok"}]
    )
    api = ServerProcess(tmp_path, port=free_port(), command="api", env=env)
    await api.start()
    worker = ServerProcess(tmp_path, port=0, command="worker", env=env)
    try:
        async with httpx.AsyncClient(base_url=api.url) as c:
            r = await c.post("/ingest", json={"source": "split", "id": "s-1"})
            assert r.status_code == 202
            status = (await c.get("/ingest/s-1/status")).json()
            assert status["status"] == "pending"  # no worker yet
            await worker.start()

            async def completed() -> bool:
                return bool((await c.get("/ingest/s-1/status")).json()["status"] == "completed")

            await wait_for(completed)
        assert "s-1" in (tmp_path / "ok.log").read_text().split()
    finally:
        worker_code = await worker.stop()
        await api.stop()
    assert worker_code == 0, worker.logs()


def test_serve_with_a_list_written_as_people_write_lists(tmp_path: Path) -> None:
    env = {"INGESTD_WEBHOOK_ALLOW_NETS": "127.0.0.0/8,::1/128", "INGESTD_RETRY_SCHEDULE": "0,5"}
    shown = run_cli("config", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["webhook_allow_nets"] == ["127.0.0.0/8", "::1/128"]
    bad = run_cli("serve", "--port", str(free_port()), env={"INGESTD_RETRY_SCHEDULE": "0,5,later"})
    assert bad.returncode == 2
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("ingestd: invalid settings: INGESTD_RETRY_SCHEDULE item 3:")
    assert "comma-separated list (a,b,c) or a JSON list" in line
