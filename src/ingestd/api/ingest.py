"""The fast path: POST /ingest, /ingest/batch and /api/events as a lean ASGI handler.

No framework, no per-request model layer: read the body within its limit, decode it with
msgspec, check it by hand (envelope.py), hand it to the group committer, and answer only
after the commit. Everything else is served by the FastAPI app behind this one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

from ingestd.api.problems import CONTENT_TYPE as PROBLEM_CT
from ingestd.api.problems import problem, problem_bytes
from ingestd.cloudevents import (
    BATCHED,
    STRUCTURED,
    cloudevent_from_headers,
    envelope_from_cloudevent,
    is_binary,
)
from ingestd.envelope import decode_json, parse_event
from ingestd.errors import InvalidEvent, MalformedBody, Overloaded, StoreUnavailable
from ingestd.model import AcceptOutcome, OutcomeKind, Submission
from ingestd.obs import metrics

if TYPE_CHECKING:
    from ingestd.runtime import Runtime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SINGLE_PATHS = frozenset({"/ingest", "/api/events"})
BATCH_PATH = "/ingest/batch"
FAST_PATHS = SINGLE_PATHS | {BATCH_PATH}
KEY_HEADERS = (b"idempotency-key", b"x-idempotency-key", b"x-event-id")
JSON_CT = b"application/json"
_encode = msgspec.json.encode


class TooLarge(Exception):
    pass


class Reply:
    """A response to send: status, JSON body, extra headers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = JSON_CT,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []
        self.content_type = content_type


def problem_reply(status: int, slug: str, detail: str, **extra: Any) -> Reply:
    headers = []
    if status in (429, 503):
        headers.append((b"retry-after", str(extra.pop("retry_after", 1)).encode()))
    else:
        extra.pop("retry_after", None)
    return Reply(status, problem_bytes(status, slug, detail, **extra), headers, PROBLEM_CT)


def invalid_reply(exc: InvalidEvent) -> Reply:
    slug = "malformed-json" if isinstance(exc, MalformedBody) else "invalid-event"
    return problem_reply(exc.status, slug, str(exc), field=exc.field)


class IngestHandler:
    """Serves the ingest paths of one process."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        s = runtime.settings
        self.max_event = s.max_event_bytes
        self.max_batch_bytes = s.max_batch_bytes
        self.max_batch = s.max_batch
        self.retry_after = s.retry_after_seconds
        self.derive = {name: src.derive_key for name, src in s.sources.items() if src.derive_key}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            reply = await self.handle(scope, receive)
        except Exception:  # a bug must not become a dropped connection without an answer
            metrics.requests_with_status(500).inc()
            reply = problem_reply(500, "internal", "ingestd failed to handle this request")
            await self._send(send, reply)
            raise
        metrics.requests_with_status(reply.status).inc()
        await self._send(send, reply)

    @staticmethod
    async def _send(send: Send, reply: Reply) -> None:
        headers = [
            (b"content-type", reply.content_type),
            (b"content-length", str(len(reply.body)).encode()),
            *reply.headers,
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def handle(self, scope: Scope, receive: Receive) -> Reply:
        path = scope["path"]
        if scope["method"] != "POST":
            reply = problem_reply(405, "method-not-allowed", f"{path} accepts only POST")
            reply.headers.append((b"allow", b"POST"))
            return reply
        headers = dict(scope["headers"])
        batch = path == BATCH_PATH
        content_type = headers.get(b"content-type", JSON_CT).split(b";")[0].strip().lower()
        if content_type != JSON_CT and not content_type.endswith(b"+json"):
            return problem_reply(
                415,
                "unsupported-media-type",
                "send JSON (Content-Type: application/json), not "
                + content_type.decode(errors="replace"),
            )
        limit = self.max_batch_bytes if batch else self.max_event
        try:
            body = await read_body(headers, receive, limit)
        except TooLarge:
            return problem_reply(
                413,
                "payload-too-large",
                f"the body exceeds {limit} bytes"
                + (" (INGESTD_MAX_BATCH_BYTES)" if batch else " (INGESTD_MAX_EVENT_BYTES)"),
                limit=limit,
            )
        try:  # a binary-mode CloudEvent without data has an empty body
            doc = None if not body and is_binary(headers) else decode_json(body)
        except MalformedBody as exc:
            return invalid_reply(exc)
        try:
            if content_type == BATCHED:
                if not isinstance(doc, list):
                    raise InvalidEvent("a CloudEvents batch is a JSON array", field="$")
                return await self._batch(doc, cloudevents=True)
            if content_type == STRUCTURED:
                doc = envelope_from_cloudevent(doc)
            elif is_binary(headers):
                doc = envelope_from_cloudevent(cloudevent_from_headers(headers, doc))
        except InvalidEvent as exc:
            return invalid_reply(exc)
        if batch:
            return await self._batch(doc)
        return await self._single(doc, headers)

    def _key(self, headers: dict[bytes, bytes]) -> str | None:
        for name in KEY_HEADERS:
            value = headers.get(name)
            if value is not None:
                return value.decode("latin-1")
        return None

    async def _single(self, doc: Any, headers: dict[bytes, bytes]) -> Reply:
        try:
            sub = parse_event(
                doc,
                idempotency_key=self._key(headers),
                derive_key=self.derive,
                received_at=time.time(),
            )
        except InvalidEvent as exc:
            metrics.events_with_outcome("rejected").inc()
            return invalid_reply(exc)
        try:
            outcome = (await self.rt.acceptor.accept([sub]))[0]
        except Overloaded as exc:
            return problem_reply(503, "overloaded", str(exc), retry_after=self.retry_after)
        except StoreUnavailable as exc:
            return problem_reply(
                503,
                "store-unavailable",
                f"the event was not stored: {exc}",
                retry_after=self.retry_after,
            )
        metrics.events_with_outcome(outcome.kind.value).inc()
        if outcome.kind is OutcomeKind.ACCEPTED:
            if not self.rt.settings.async_ingestion:
                return await self._processed([(sub, outcome)])
            return Reply(202, _encode(accepted_body(sub, outcome)))
        if outcome.kind is OutcomeKind.DUPLICATE:
            return Reply(
                200, _encode(duplicate_body(sub, outcome)), [(b"idempotent-replayed", b"true")]
            )
        status, slug, detail = rejection(sub, outcome)
        return problem_reply(status, slug, detail, idempotency_key=sub.idempotency_key)

    async def _batch(self, doc: Any, *, cloudevents: bool = False) -> Reply:
        items = doc.get("events") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            return problem_reply(
                422, "invalid-batch", 'a batch is {"events": [...]} (or a JSON array of events)'
            )
        if len(items) > self.max_batch:
            return problem_reply(
                413,
                "batch-too-large",
                f"a batch holds at most {self.max_batch} events (INGESTD_MAX_BATCH); "
                f"got {len(items)}",
            )
        received = time.time()
        results: list[dict[str, Any]] = [{} for _ in items]
        subs: list[tuple[int, Submission]] = []
        for index, item in enumerate(items):
            try:
                if cloudevents:
                    item = envelope_from_cloudevent(item, f"[{index}]")
                sub = parse_event(item, derive_key=self.derive, received_at=received)
            except InvalidEvent as exc:
                slug = "malformed-json" if isinstance(exc, MalformedBody) else "invalid-event"
                field = f"events[{index}].{exc.field}" if exc.field else f"events[{index}]"
                results[index] = {
                    "status": "rejected",
                    "error": problem(exc.status, slug, str(exc), field=field),
                }
                metrics.events_with_outcome("rejected").inc()
            else:
                subs.append((index, sub))
        if subs:
            try:
                outcomes = await self.rt.acceptor.accept([s for _, s in subs])
            except Overloaded as exc:
                return problem_reply(503, "overloaded", str(exc), retry_after=self.retry_after)
            except StoreUnavailable as exc:
                return problem_reply(
                    503,
                    "store-unavailable",
                    f"no event of the batch was stored: {exc}",
                    retry_after=self.retry_after,
                )
            accepted = []
            for (index, sub), outcome in zip(subs, outcomes, strict=True):
                metrics.events_with_outcome(outcome.kind.value).inc()
                if outcome.kind is OutcomeKind.ACCEPTED:
                    results[index] = accepted_body(sub, outcome)
                    accepted.append((index, sub, outcome))
                elif outcome.kind is OutcomeKind.DUPLICATE:
                    results[index] = duplicate_body(sub, outcome)
                else:
                    status, slug, detail = rejection(sub, outcome)
                    results[index] = {
                        "status": "rejected",
                        "error": problem(status, slug, detail, field=f"events[{index}]"),
                    }
            if accepted and not self.rt.settings.async_ingestion:
                processed = await self.rt.process_now([(s, o) for _, s, o in accepted])
                for (index, _, _), body in zip(accepted, processed, strict=True):
                    results[index] = body
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for r in results:
            counts[r["status"] if r["status"] in counts else "accepted"] += 1
        return Reply(207, _encode({"results": results, **counts}))

    async def _processed(self, items: list[tuple[Submission, AcceptOutcome]]) -> Reply:
        body = (await self.rt.process_now(items))[0]
        return Reply(200, _encode(body))


def accepted_body(sub: Submission, outcome: AcceptOutcome) -> dict[str, Any]:
    return {
        "status": "accepted",
        "id": outcome.id,
        "event_id": outcome.id,
        "idempotency_key": sub.idempotency_key,
        "status_url": f"/ingest/{outcome.id}/status",
    }


def duplicate_body(sub: Submission, outcome: AcceptOutcome) -> dict[str, Any]:
    return {
        "status": "duplicate",
        "id": outcome.id,
        "event_id": outcome.id,
        "original_id": outcome.id,
        "idempotency_key": sub.idempotency_key,
        "status_url": f"/ingest/{outcome.id}/status",
    }


def rejection(sub: Submission, outcome: AcceptOutcome) -> tuple[int, str, str]:
    if outcome.kind is OutcomeKind.MISMATCH:
        return (
            422,
            "idempotency-key-reused",
            f"idempotency key {sub.idempotency_key!r} was already used with a different "
            f"payload (event {outcome.id}); use a new key for a new event",
        )
    return (
        409,
        "event-id-conflict",
        f"event id {outcome.id!r} already belongs to another event; choose a unique id",
    )


async def read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes (by Content-Length or while streaming)."""
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
