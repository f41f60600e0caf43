"""API keys kept in the store, across two real API processes on one PostgreSQL database:
made by the CLI or POST /keys (the plaintext shown once), accepted by both processes,
revoked in one and refused by the other within 5 s, expired keys refused, none logged."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from support import ServerProcess, free_port, run_cli, wait_for

EVENT = {"source": "s", "type": "t"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refused(client: httpx.AsyncClient, url: str, key: str) -> bool:
    reply = await client.post(f"{url}/ingest", json=EVENT, headers=bearer(key))
    return reply.status_code == 401


async def test_stored_keys_across_two_api_processes(tmp_path: Path, pg_url: str) -> None:
    env = {"INGESTD_DATABASE_URL": pg_url}
    apis = [
        ServerProcess(tmp_path, port=free_port(), command="api", database_url=pg_url)
        for _ in range(2)
    ]
    for api in apis:
        await api.start()
    a, b = (api.url for api in apis)
    secrets: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            # No key anywhere yet: the API is open (loopback development).
            assert (await http.post(f"{a}/ingest", json=EVENT)).status_code == 202

            made = run_cli("keys", "create", "--scopes", "ingest,read,admin", "--name",
                           "ops", "--quiet", env=env)  # fmt: skip
            assert made.returncode == 0, made.stderr
            admin = made.stdout.strip()
            secrets.append(admin)
            assert admin.startswith("igd_") and len(admin) > 40

            # Both processes turn authentication on and accept the key, within 5 s.
            for url in (a, b):
                await wait_for(lambda u=url: refused(http, u, "igd_not-a-key"), 5, 0.1)
                ok = await http.post(f"{url}/ingest", json=EVENT, headers=bearer(admin))
                assert ok.status_code == 202, ok.text
            assert (await http.post(f"{b}/ingest", json=EVENT)).status_code == 401

            # POST /keys on A: shown once, listed without it on B.
            reply = await http.post(
                f"{a}/keys",
                json={"tenant": "acme", "scopes": ["ingest"], "source": "shop", "name": "shop"},
                headers=bearer(admin),
            )
            assert reply.status_code == 201, reply.text
            assert reply.headers["cache-control"] == "no-store"
            shop = reply.json()
            secrets.append(shop["key"])
            assert shop["prefix"] == shop["key"][:12] and shop["state"] == "active"
            listed = (await http.get(f"{b}/keys", headers=bearer(admin))).json()["keys"]
            assert {k["id"] for k in listed} == {shop["id"], listed[0]["id"]}
            assert all("key" not in k and "digest" not in k for k in listed)
            assert shop["key"] not in json.dumps(listed)

            async def accepted_on_b() -> bool:
                sent = await http.post(
                    f"{b}/ingest", json={"type": "t"}, headers=bearer(shop["key"])
                )
                return sent.status_code == 202

            await wait_for(accepted_on_b, 5, 0.1)
            read_only = await http.get(f"{b}/events", headers=bearer(shop["key"]))
            assert read_only.status_code == 403  # an ingest key does not read /events

            # Revoked on B: A refuses it within 5 s (measured), and says so in its metrics.
            began = time.monotonic()
            gone = await http.delete(f"{b}/keys/{shop['id']}", headers=bearer(admin))
            assert gone.status_code == 200 and gone.json()["state"] == "revoked"
            await wait_for(lambda: refused(http, a, shop["key"]), 5, 0.05)
            took = time.monotonic() - began
            assert took < 5.0
            assert await refused(http, b, shop["key"])
            again = await http.delete(f"{a}/keys/{shop['id']}", headers=bearer(admin))
            assert again.status_code == 200  # idempotent
            unknown = await http.delete(f"{a}/keys/key_nope", headers=bearer(admin))
            assert unknown.status_code == 404
            metrics = (await http.get(f"{a}/metrics")).text
            assert 'ingestd_auth_failures_total{reason="revoked"}' in metrics

            # An expiring key works, then is refused once past its time (no reload needed).
            short = run_cli("keys", "create", "--expires", "3s", "--quiet", env=env)
            assert short.returncode == 0, short.stderr
            brief = short.stdout.strip()
            secrets.append(brief)

            async def accepted_on_a() -> bool:
                sent = await http.post(f"{a}/ingest", json=EVENT, headers=bearer(brief))
                return sent.status_code == 202

            await wait_for(accepted_on_a, 5, 0.1)
            await asyncio.sleep(3.2)
            assert await refused(http, a, brief)

            bad = await http.post(f"{a}/keys", json={"scopes": ["root"]}, headers=bearer(admin))
            assert bad.status_code == 422 and "ingest, read, admin" in bad.json()["detail"]
            past = await http.post(
                f"{a}/keys", json={"expires": "2020-01-01T00:00:00Z"}, headers=bearer(admin)
            )
            assert past.status_code == 422
    finally:
        for api in apis:
            await api.stop()

    # keys list: prefix, tenant, scopes, state, created, last used (flushed at shutdown).
    listed = run_cli("keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"] or r["id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows["shop"]["state"] == "revoked" and rows["shop"]["tenant"] == "acme"
    assert rows["ops"]["scopes"] == ["ingest", "read", "admin"]
    assert rows["ops"]["last_used_at"] != "-"
    assert run_cli("keys", "revoke", "key_nope", env=env).returncode == 1
    # Never logged: not by the servers, not by the CLI's listing.
    for text in [api.logs() for api in apis] + [listed.stdout, listed.stderr]:
        for secret in secrets:
            assert secret not in text
