"""Request bodies of the framework routes (the admin API): read within a limit, checked
as strict JSON, then replayed to the route.

Without this a route read any size of body (a 20 MB `/dlq/replay` was read whole) and
took NaN, Infinity and duplicate member names as Python's json module does. The same
rules as the ingest path apply: a body over INGESTD_MAX_ADMIN_BODY_BYTES is a 413, one
cut short is never acted on, a Content-Encoding is a 415, JSON that is not strict is a 400.
"""

from __future__ import annotations

from ingestd.api.ingest import (
    JSON_CT,
    CutShort,
    Message,
    Receive,
    Reply,
    Scope,
    TooLarge,
    encoding_refused,
    invalid_reply,
    read_body,
    too_large,
)
from ingestd.errors import MalformedBody
from ingestd.ingest.envelope import decode_json
from ingestd.ingest.strict_json import check_unique

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_json(content_type: bytes | None) -> bool:
    """A missing Content-Type is taken as JSON, as on the ingest path (documented)."""
    if content_type is None:
        return True
    media = content_type.split(b";")[0].strip().lower()
    return media == JSON_CT or media.endswith(b"+json")


async def buffered(scope: Scope, receive: Receive, limit: int) -> Receive | Reply | None:
    """A receive that replays the checked body; a Reply refusing it; None when the client
    went away before the body's end (nothing to answer, nothing to do)."""
    headers = dict(scope["headers"])
    refused = encoding_refused(headers)
    if refused is not None:
        return refused
    try:
        body = await read_body(headers, receive, limit)
    except TooLarge:
        return too_large(limit, "INGESTD_MAX_ADMIN_BODY_BYTES")
    except CutShort:
        return None
    if body and is_json(headers.get(b"content-type")):
        try:
            check_unique(body, decode_json(body))
        except MalformedBody as exc:
            return invalid_reply(exc)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # what follows the body: a disconnect, in time
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
