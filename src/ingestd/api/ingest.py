"""The fast path: POST /ingest, /ingest/batch and /api/events as a lean ASGI handler.

No framework, no per-request model layer: read the body within its limit, decode it with
msgspec, check it by hand (envelope.py), hand it to the group committer, and answer only
after the commit. Everything else is served by the FastAPI app behind this one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

from ingestd.api.auth import Keyring, Principal, challenge, unauthorized_detail
from ingestd.api.problems import CONTENT_TYPE as PROBLEM_CT
from ingestd.api.problems import INTERNAL_DETAIL, answer_for, problem, problem_bytes
from ingestd.api.views import processed_body
from ingestd.errors import (
    InvalidEvent,
    MalformedBody,
    OutcomeUnknown,
    Overloaded,
    StoreUnavailable,
)
from ingestd.ingest.cloudevents import (
    BATCHED,
    STRUCTURED,
    cloudevent_from_headers,
    envelope_from_cloudevent,
    is_binary,
)
from ingestd.ingest.envelope import decode_json, parse_event, utc_now
from ingestd.ingest.strict_json import check_unique
from ingestd.limits.buckets import LimiterUnavailable
from ingestd.limits.policy import Decision, RateLimits
from ingestd.model import DEFAULT_TENANT, AcceptOutcome, OutcomeKind, Submission
from ingestd.obs import metrics, tracing

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
log = logging.getLogger("ingestd.api")


class TooLarge(Exception):
    pass


class CutShort(Exception):
    """The client went away (or the body ended) before its last byte: nothing is stored."""


class Reply:
    """A response to send: status, JSON body, extra headers."""

    __slots__ = ("body", "content_type", "counts", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = JSON_CT,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []
        self.content_type = content_type
        self.counts = counts
        """A batch's events per outcome (for its trace span)."""


def problem_reply(status: int, slug: str, detail: str, **extra: Any) -> Reply:
    headers = []
    if status in (429, 503):
        headers.append((b"retry-after", str(extra.pop("retry_after", 1)).encode()))
    else:
        extra.pop("retry_after", None)
    return Reply(status, problem_bytes(status, slug, detail, **extra), headers, PROBLEM_CT)


def encoding_refused(headers: Mapping[bytes, bytes]) -> Reply | None:
    """A 415 for a Content-Encoding other than identity (we decode none); else None."""
    encoding = headers.get(b"content-encoding")
    if encoding is None or encoding.strip().lower() in (b"", b"identity"):
        return None
    return problem_reply(
        415,
        "unsupported-content-encoding",
        f"Content-Encoding {encoding.decode(errors='replace')!r} is not accepted; send the "
        "body uncompressed (no Content-Encoding, or identity)",
    )


def too_large(limit: int, setting: str) -> Reply:
    return problem_reply(
        413, "payload-too-large", f"the body exceeds {limit} bytes ({setting})", limit=limit
    )


def unauthorized_reply(headers: Mapping[bytes, bytes]) -> Reply:
    reply = problem_reply(401, "unauthorized", unauthorized_detail(headers))
    sent = b"authorization" in headers or b"x-api-key" in headers
    reply.headers.append((b"www-authenticate", challenge("invalid_token" if sent else None)))
    return reply


def forbidden_reply(detail: str, scope: str | None = None) -> Reply:
    reply = problem_reply(403, "forbidden", detail)
    if scope is not None:
        reply.headers.append((b"www-authenticate", challenge("insufficient_scope", scope)))
    return reply


def source_refused(principal: Principal, claimed: str) -> tuple[int, str, str]:
    return (
        403,
        "source-not-allowed",
        f"API key {principal.key_id!r} may only send events of source {principal.source!r}, "
        f"not {claimed!r}; leave source out to have it set from the key",
    )


def rate_limited_reply(decision: Decision, cost: int) -> Reply:
    if math.isinf(decision.retry_after):
        return problem_reply(
            413,
            "batch-exceeds-rate-burst",
            f"this request carries {cost} events but the rate limit allows at most "
            f"{decision.limit} at once; split it into smaller batches",
            limit=decision.limit,
        )
    wait = max(1, math.ceil(decision.retry_after))
    reply = problem_reply(
        429,
        "rate-limited",
        f"over the rate limit ({decision.limit} events per {math.ceil(decision.window)} s): "
        f"{cost} event(s) fit again in {wait} s; nothing was stored",
        retry_after=wait,
    )
    reply.headers += decision.headers()
    return reply


def event_count(doc: Any) -> int:
    """What a request costs the rate limit: its number of events."""
    items = doc.get("events") if isinstance(doc, dict) else doc
    return len(items) if isinstance(items, list) and items else 1


def invalid_reply(exc: InvalidEvent) -> Reply:
    status, slug = answer_for(exc)
    return problem_reply(status, slug, str(exc), field=exc.field)


class Refusals:
    """Why ingest answers 503, logged once per change of cause with a count (1,516 of
    them in 20 s were logged not at all; one line each would flood the log)."""

    __slots__ = ("cause", "count", "since")

    def __init__(self) -> None:
        self.cause: str | None = None
        self.count = 0
        self.since = 0.0

    def refused(self, cause: str, detail: str) -> None:
        if cause != self.cause:
            if self.cause is not None:
                self._summary(f"now {cause}: {detail}")
            else:
                log.warning("ingest is answering 503 (%s): %s", cause, detail)
            self.cause, self.count, self.since = cause, 0, time.monotonic()
        self.count += 1

    def recovered(self) -> None:
        self._summary("accepting again")
        self.cause, self.count = None, 0

    def _summary(self, now: str) -> None:
        log.warning(
            "ingest answered %d request(s) 503 (%s) over %.1f s; %s",
            self.count,
            self.cause,
            time.monotonic() - self.since,
            now,
        )


class IngestHandler:
    """Serves the ingest paths of one process."""

    def __init__(
        self, runtime: Runtime, keyring: Keyring | None = None, limits: RateLimits | None = None
    ) -> None:
        self.rt = runtime
        self.keyring = keyring
        self.limits = limits
        s = runtime.settings
        self.max_event = s.max_event_bytes
        self.max_batch_bytes = s.max_batch_bytes
        self.max_batch = s.max_batch
        self.retry_after = s.retry_after_seconds
        self.refusals = Refusals()
        self.derive = {name: src.derive_key for name, src in s.sources.items() if src.derive_key}
        for path in FAST_PATHS:  # every class at 0 from the start: a 5xx ratio has a series
            for status in (200, 400, 500):
                metrics.request_timer(path, status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        span = None
        if tracing.tracer().enabled:
            span, scope["headers"] = tracing.start_ingest(scope["headers"], scope["path"])
        try:
            reply = await self.handle(scope, receive)
        except CutShort:
            # Nobody is left to answer, and an event nobody was told about is never stored.
            metrics.requests_with_status(499).inc()
            if span is not None:
                tracing.end_ingest(span, 499)
            return
        except Exception:  # a bug must not become a dropped connection without an answer
            metrics.requests_with_status(500).inc()
            if span is not None:
                tracing.end_ingest(span, 500)
            reply = problem_reply(500, "internal", INTERNAL_DETAIL)
            await self.send_reply(send, reply)
            metrics.observe_request(scope["path"], 500, time.perf_counter() - started)
            raise
        metrics.requests_with_status(reply.status).inc()
        if span is not None:
            replayed = (b"idempotent-replayed", b"true") in reply.headers
            tracing.end_ingest(span, reply.status, reply.counts, replayed)
        await self.send_reply(send, reply)
        # The path is one of FAST_PATHS: a bounded label.
        metrics.observe_request(scope["path"], reply.status, time.perf_counter() - started)

    @staticmethod
    async def send_reply(send: Send, reply: Reply) -> None:
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
        principal = None
        if self.keyring is not None and self.keyring.active:
            principal = self.keyring.authenticate(headers)
            if principal is None:
                return unauthorized_reply(headers)
            if not principal.can_ingest:
                return forbidden_reply(
                    f"API key {principal.key_id!r} lacks the ingest scope", scope="ingest"
                )
        batch = path == BATCH_PATH
        content_type = headers.get(b"content-type", JSON_CT).split(b";")[0].strip().lower()
        if content_type != JSON_CT and not content_type.endswith(b"+json"):
            return problem_reply(
                415,
                "unsupported-media-type",
                "send JSON (Content-Type: application/json), not "
                + content_type.decode(errors="replace"),
            )
        refused = encoding_refused(headers)
        if refused is not None:
            return refused
        limit = self.max_batch_bytes if batch else self.max_event
        try:
            body = await read_body(headers, receive, limit)
        except TooLarge:
            return too_large(
                limit, "INGESTD_MAX_BATCH_BYTES" if batch else "INGESTD_MAX_EVENT_BYTES"
            )
        try:  # a binary-mode CloudEvent without data has an empty body
            doc = None if not body and is_binary(headers) else decode_json(body)
            compact = check_unique(body, doc)
        except MalformedBody as exc:
            return invalid_reply(exc)
        if self.limits is None:
            return await self._dispatch(doc, headers, content_type, batch, principal, compact)
        cost = event_count(doc) if batch or content_type == BATCHED else 1
        identity = f"key:{principal.key_id}" if principal else f"ip:{client_host(scope)}"
        try:
            decision = await self.limits.check(identity, cost, principal)
        except LimiterUnavailable as exc:
            return problem_reply(
                503,
                "rate-limiter-unavailable",
                f"the rate limiter did not answer and INGESTD_RATE_LIMIT_FAIL=closed ({exc}); "
                "nothing was stored",
                retry_after=self.retry_after,
            )
        if decision is not None and not decision.allowed:
            return rate_limited_reply(decision, cost)
        try:
            reply = await self._dispatch(doc, headers, content_type, batch, principal, compact)
        except Exception:
            if decision is not None:
                await self.limits.refund(identity, cost, principal)
            raise
        if decision is not None:
            if reply.status >= 500:  # our failure: the client's retry must not meet a 429
                await self.limits.refund(identity, cost, principal)
            else:
                reply.headers += decision.headers()
        return reply

    async def _dispatch(
        self,
        doc: Any,
        headers: dict[bytes, bytes],
        content_type: bytes,
        batch: bool,
        principal: Principal | None,
        compact: int,
    ) -> Reply:
        """`compact` is the length of `doc` as compact JSON (no event in it is longer)."""
        try:
            if content_type == BATCHED:
                if not isinstance(doc, list):
                    raise InvalidEvent("a CloudEvents batch is a JSON array", field="$")
                return await self._batch(
                    doc, principal, compact, cloudevents=True, trace=tracing.incoming(headers)
                )
            if content_type == STRUCTURED:
                doc = envelope_from_cloudevent(doc)
            elif is_binary(headers):
                doc = envelope_from_cloudevent(cloudevent_from_headers(headers, doc))
        except InvalidEvent as exc:
            return invalid_reply(exc)
        if batch:
            return await self._batch(doc, principal, compact, trace=tracing.incoming(headers))
        return await self._single(doc, headers, principal)

    def _not_stored(
        self, exc: Overloaded | StoreUnavailable, what: str, subs: list[Submission]
    ) -> Reply:
        """503 + Retry-After: the acceptor's queue is full, or the store did not answer,
        or the commit failed in a way that leaves its outcome unknown."""
        if isinstance(exc, Overloaded):
            self.refusals.refused("overloaded", str(exc))
            return problem_reply(503, "overloaded", str(exc), retry_after=self.retry_after)
        if isinstance(exc, OutcomeUnknown):
            self.refusals.refused("outcome-unknown", str(exc))
            metrics.store_error("accept")
            return problem_reply(
                503,
                "outcome-unknown",
                unknown_detail(exc, subs),
                title="Outcome unknown",
                retry_after=self.retry_after,
                idempotency_key=subs[0].idempotency_key if len(subs) == 1 else None,
            )
        self.refusals.refused("store-unavailable", str(exc))
        metrics.store_error("accept")
        return problem_reply(
            503, "store-unavailable", f"{what}: {exc}", retry_after=self.retry_after
        )

    def _key(self, headers: dict[bytes, bytes]) -> str | None:
        for name in KEY_HEADERS:
            value = headers.get(name)
            if value is not None:
                return value.decode("latin-1")
        return None

    async def _single(
        self, doc: Any, headers: dict[bytes, bytes], principal: Principal | None
    ) -> Reply:
        try:
            sub = parse_event(
                doc,
                idempotency_key=self._key(headers),
                default_source=principal.source if principal else None,
                derive_key=self.derive,
                tenant_id=principal.tenant if principal else DEFAULT_TENANT,
                received_at=time.time(),
                trace=tracing.incoming(headers),
            )
        except InvalidEvent as exc:
            metrics.events_with_outcome("rejected").inc()
            return invalid_reply(exc)
        if principal is not None and principal.source not in (None, sub.event.source):
            metrics.events_with_outcome("rejected").inc()
            return problem_reply(*source_refused(principal, sub.event.source))
        try:
            outcome = (await self.rt.acceptor.accept([sub]))[0]
        except (Overloaded, StoreUnavailable) as exc:
            return self._not_stored(exc, "the event was not stored", [sub])
        if self.refusals.cause is not None:
            self.refusals.recovered()
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

    async def _batch(
        self,
        doc: Any,
        principal: Principal | None,
        compact: int,
        *,
        cloudevents: bool = False,
        trace: str | None = None,
    ) -> Reply:
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
        default_time = utc_now(received)  # once per request, not per event
        tenant = principal.tenant if principal else DEFAULT_TENANT
        pinned = principal.source if principal else None
        # An event's compact JSON is a part of the whole body's: when that fits the limit
        # of one event, no event needs encoding again to be measured.
        measure = compact > self.max_event
        results: list[dict[str, Any]] = [{} for _ in items]
        subs: list[tuple[int, Submission]] = []
        tally: dict[str, int] = dict.fromkeys(["rejected", *(k.value for k in OutcomeKind)], 0)
        for index, item in enumerate(items):
            if measure and len(_encode(item)) > self.max_event:  # as /ingest would refuse it
                results[index] = {
                    "status": "rejected",
                    "error": problem(
                        413,
                        "event-too-large",
                        f"this event exceeds {self.max_event} bytes as compact JSON "
                        "(INGESTD_MAX_EVENT_BYTES), the limit of one event in a batch too",
                        field=f"events[{index}]",
                        limit=self.max_event,
                    ),
                }
                tally["rejected"] += 1
                continue
            try:
                if cloudevents:
                    item = envelope_from_cloudevent(item, f"[{index}]")
                sub = parse_event(
                    item,
                    default_source=pinned,
                    derive_key=self.derive,
                    tenant_id=tenant,
                    received_at=received,
                    trace=trace,
                    default_time=default_time,
                )
            except InvalidEvent as exc:
                status, slug = answer_for(exc)
                field = f"events[{index}].{exc.field}" if exc.field else f"events[{index}]"
                results[index] = {
                    "status": "rejected",
                    "error": problem(status, slug, str(exc), field=field),
                }
                tally["rejected"] += 1
            else:
                if pinned is not None and principal is not None and sub.event.source != pinned:
                    status, slug, detail = source_refused(principal, sub.event.source)
                    results[index] = {
                        "status": "rejected",
                        "error": problem(status, slug, detail, field=f"events[{index}].source"),
                    }
                    tally["rejected"] += 1
                    continue
                subs.append((index, sub))
        if subs:
            try:
                outcomes = await self.rt.acceptor.accept([s for _, s in subs])
            except (Overloaded, StoreUnavailable) as exc:
                counted(tally)
                return self._not_stored(
                    exc, "no event of the batch was stored", [s for _, s in subs]
                )
            if self.refusals.cause is not None:
                self.refusals.recovered()
            accepted = []
            for (index, sub), outcome in zip(subs, outcomes, strict=True):
                tally[outcome.kind.value] += 1
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
            counted(tally)
            if accepted and not self.rt.settings.async_ingestion:
                processed = await self.rt.process_now([(s, o) for _, s, o in accepted])
                for (index, _, _), done in zip(accepted, processed, strict=True):
                    results[index] = processed_body(done)
        else:
            counted(tally)
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for r in results:
            counts[r["status"] if r["status"] in counts else "accepted"] += 1
        return Reply(207, _encode({"results": results, **counts}), counts=counts)

    async def _processed(self, items: list[tuple[Submission, AcceptOutcome]]) -> Reply:
        done = (await self.rt.process_now(items))[0]
        return Reply(200, _encode(processed_body(done)))


def counted(tally: dict[str, int]) -> None:
    """A batch's events by outcome into the metric: one increment per outcome, not event."""
    for outcome, count in tally.items():
        if count:
            metrics.events_with_outcome(outcome).inc(count)


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


def unknown_detail(exc: OutcomeUnknown, subs: list[Submission]) -> str:
    """What a client does after a commit of unknown outcome: resend under the same keys."""
    single = len(subs) == 1
    what = "the event" if single else "the events of this batch"
    keyless = sum(s.idempotency_key is None for s in subs)
    if keyless == 0:
        how = (
            "retrying with the same event id or Idempotency-Key is safe: a stored event "
            "answers 200 duplicate (Idempotent-Replayed: true), any other 202"
            if single
            else "resending the batch with the same event ids is safe: each stored event "
            "answers duplicate, the others accepted"
        )
    else:
        how = (
            f"{'it' if single else f'{keyless} of them'} carried no id (nor an "
            "Idempotency-Key), so a retry may store it twice: give events an id to retry "
            "safely"
        )
    return f"outcome unknown: {what} may have been stored ({exc}); {how}"


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


def client_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes (by Content-Length or while streaming).

    Raises CutShort when the client disconnects before the last chunk, or the body ends
    short of its Content-Length: a complete-looking prefix must never be stored.
    """
    declared = headers.get(b"content-length")
    expected = -1
    if declared is not None:
        with contextlib.suppress(ValueError):  # the server refused a bad one already
            expected = int(declared)
        if expected > limit:
            raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CutShort
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if 0 <= expected != size:
        raise CutShort
    return b"".join(chunks)
