"""Destinations: health list, one destination's page, create and edit, enable and disable,
rotate a webhook secret (old and new both sign until the overlap is ended), send a test
event and follow its attempt. Changes go through the admin service."""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.health import health_of
from ingestd.api.console.session import Session
from ingestd.api.console.web import BASE, COUNT_CAP, Denied, Form, Web, first, redirect
from ingestd.config import masked
from ingestd.errors import IngestdError
from ingestd.ingest.envelope import parse_event
from ingestd.store.protocol import DeadLetterQuery, DestinationRow

TENANT = "default"
KINDS = ("webhook", "email", "handler", "inbox")
FORM_FIELDS = ("name", "kind", "url", "event_types", "sources", "retry_schedule", "max_in_flight")
SECRET_KEYS = ("secret", "secrets")
TEST_TYPE = "ingestd.test"


def path_of(name: str) -> str:
    return f"{BASE}/destinations/{urllib.parse.quote(name, safe='')}"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def secrets_of(config: dict[str, Any]) -> list[str]:
    found = config.get("secrets") or []
    found = [found] if isinstance(found, str) else list(found)
    if config.get("secret"):
        found = [config["secret"], *found]
    return [s for s in found if isinstance(s, str)]


def form_values(row: DestinationRow | None) -> dict[str, str]:
    """What the create/edit form shows: the common fields, and the kind's options as JSON
    (secrets left out: they are rotated, never shown again)."""
    if row is None:
        return {"kind": "webhook", "event_types": "*", "max_in_flight": "64", "options": "{}"}
    config = row.config
    options = {
        k: v for k, v in config.items() if k not in FORM_FIELDS and k not in SECRET_KEYS
    } | {}
    return {
        "name": row.name,
        "kind": str(config.get("kind", "")),
        "url": str(config.get("url", "")),
        "event_types": ", ".join(config.get("event_types") or []),
        "sources": ", ".join(config.get("sources") or []),
        "retry_schedule": ", ".join(f"{s:g}" for s in config.get("retry_schedule") or []),
        "max_in_flight": str(config.get("max_in_flight", 64)),
        "options": json.dumps({k: v for k, v in options.items() if k != "url"}, indent=2),
    }


def listed(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def doc_from_form(form: Form, *, editing: DestinationRow | None) -> dict[str, Any]:
    """A destination document from the form; a merge patch (None removes) when editing."""
    try:
        options = json.loads(first(form, "options") or "{}")
    except json.JSONDecodeError as exc:
        raise Denied(422, "invalid-destination", f"options: not JSON ({exc.msg})") from None
    if not isinstance(options, dict):
        raise Denied(422, "invalid-destination", "options: a JSON object of kind settings")
    if any(k in options for k in SECRET_KEYS) and editing is not None:
        raise Denied(422, "invalid-destination", "secrets change by rotation, not by editing")
    try:
        schedule = [float(s) for s in listed(first(form, "retry_schedule"))] or None
        in_flight = int(first(form, "max_in_flight") or 64)
    except ValueError:
        raise Denied(
            422,
            "invalid-destination",
            "retry schedule: seconds, comma-separated; max in flight: a whole number",
        ) from None
    doc: dict[str, Any] = {
        **options,
        "kind": first(form, "kind"),
        "event_types": listed(first(form, "event_types")) or ["*"],
        "sources": listed(first(form, "sources")),
        "retry_schedule": schedule,
        "max_in_flight": in_flight,
    }
    url = first(form, "url")
    if url:
        doc["url"] = url
    elif editing is not None:
        doc["url"] = None
    if editing is None:
        doc["name"] = first(form, "name")
        doc = {k: v for k, v in doc.items() if v is not None}
        if doc.get("kind") == "webhook" and "secret" not in doc and "secrets" not in doc:
            doc["secret"] = new_secret()  # every webhook is signed from its first delivery
    else:
        dropped = set(editing.config) - set(doc) - set(FORM_FIELDS) - set(SECRET_KEYS) - {"name"}
        doc.update(dict.fromkeys(dropped))  # options taken out of the JSON are removed
    return doc


async def listing(web: Web, request: Request, session: Session) -> Response:
    rows = await web.store.list_destinations(TENANT)
    backlog = await web.store.destination_backlog(None, dead_cap=COUNT_CAP + 1)
    return web.render(request, session, "destinations.html", health=health_of(rows, backlog))


async def detail(web: Web, request: Request, session: Session) -> Response:
    name = request.path_params["name"]
    row = await web.store.get_destination(TENANT, name)
    if row is None:
        raise Denied(404, "destination-not-found", f"no destination named {name!r}")
    return await page_of(web, request, session, row, request.query_params.get("notice"))


async def page_of(
    web: Web,
    request: Request,
    session: Session,
    row: DestinationRow,
    notice: str | None,
    shown_secret: str | None = None,
) -> Response:
    """A destination's page (after a rotation, with the new secret shown this once)."""
    backlog = await web.store.destination_backlog(None, dead_cap=COUNT_CAP + 1)
    (health,) = health_of([row], backlog)
    dead = await web.store.dead_letters(
        DeadLetterQuery(tenant_id=session.principal.tenant, destination=row.name, limit=5)
    )
    return web.render(
        request,
        session,
        "destination.html",
        health=health,
        row=row,
        config=masked(dict(row.config)),
        secret_count=len(secrets_of(row.config)),
        dead=dead.items,
        notice=notice,
        shown_secret=shown_secret,
    )


async def new(web: Web, request: Request, session: Session) -> Response:
    return web.render(
        request, session, "destination_form.html", row=None, values=form_values(None), kinds=KINDS
    )


async def edit(web: Web, request: Request, session: Session) -> Response:
    row = await web.store.get_destination(TENANT, request.path_params["name"])
    if row is None:
        raise Denied(404, "destination-not-found", "no such destination")
    return web.render(
        request, session, "destination_form.html", row=row, values=form_values(row), kinds=KINDS
    )


async def create(web: Web, request: Request, session: Session, form: Form) -> Response:
    doc = doc_from_form(form, editing=None)
    try:
        row = await web.admin.create_destination(doc)
    except IngestdError as exc:
        return form_error(web, request, session, None, form, str(exc))
    return redirect(path_of(row.name) + "?notice=created")


async def update(web: Web, request: Request, session: Session, form: Form) -> Response:
    row = await web.store.get_destination(TENANT, request.path_params["name"])
    if row is None:
        raise Denied(404, "destination-not-found", "no such destination")
    try:
        await web.admin.patch_destination(row.name, doc_from_form(form, editing=row))
    except IngestdError as exc:
        return form_error(web, request, session, row, form, str(exc))
    return redirect(path_of(row.name) + "?notice=saved")


def form_error(
    web: Web,
    request: Request,
    session: Session,
    row: DestinationRow | None,
    form: Form,
    error: str,
) -> Response:
    values = {k: first(form, k) for k in (*FORM_FIELDS, "options")}
    return web.render(
        request,
        session,
        "destination_form.html",
        422,
        row=row,
        values=values,
        kinds=KINDS,
        error=error,
    )


async def set_enabled(web: Web, request: Request, session: Session, form: Form) -> Response:
    name = request.path_params["name"]
    enabled = first(form, "enabled") == "true"
    try:
        await web.admin.patch_destination(name, {"enabled": enabled})
    except IngestdError as exc:
        raise Denied(422, "invalid-destination", str(exc)) from None
    return redirect(path_of(name) + ("?notice=enabled" if enabled else "?notice=disabled"))


async def rotate(web: Web, request: Request, session: Session, form: Form) -> Response:
    """A new secret signs first; the old ones keep signing until the overlap is ended, so
    receivers can switch at their pace (Standard Webhooks: one signature per secret)."""
    row = await webhook_row(web, request.path_params["name"])
    fresh = new_secret()
    await web.admin.patch_destination(
        row.name, {"secret": None, "secrets": [fresh, *secrets_of(row.config)]}
    )
    row = await webhook_row(web, row.name)
    return await page_of(web, request, session, row, "rotated", shown_secret=fresh)


async def end_overlap(web: Web, request: Request, session: Session, form: Form) -> Response:
    row = await webhook_row(web, request.path_params["name"])
    kept = secrets_of(row.config)[:1]
    await web.admin.patch_destination(row.name, {"secret": None, "secrets": kept})
    return redirect(path_of(row.name) + "?notice=overlap-ended")


async def webhook_row(web: Web, name: str) -> DestinationRow:
    row: DestinationRow | None = await web.store.get_destination(TENANT, name)
    if row is None:
        raise Denied(404, "destination-not-found", f"no destination named {name!r}")
    if row.config.get("kind") != "webhook":
        raise Denied(422, "not-a-webhook", "only webhooks have signing secrets")
    return row


async def send_test(web: Web, request: Request, session: Session, form: Form) -> Response:
    """An `ingestd.test` event for this destination alone; its page shows the attempt."""
    row = await web.store.get_destination(TENANT, request.path_params["name"])
    if row is None:
        raise Denied(404, "destination-not-found", "no such destination")
    now = time.time()
    submission = parse_event(
        {
            "source": "ingestd.console",
            "type": TEST_TYPE,
            "subject": row.name,
            "data": {"test": True, "destination": row.name, "by": session.principal.key_id},
        },
        tenant_id=session.principal.tenant,
        received_at=now,
    )
    (outcome,) = await web.runtime.acceptor.accept([submission], only=row.name)
    return redirect(f"{BASE}/events/{urllib.parse.quote(outcome.id, safe='')}")
