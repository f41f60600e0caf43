// What the SDK adds to an event before its first attempt: an id, a time, its JSON text.
// They are fixed once, so every retry sends the same bytes and the server deduplicates
// it on `source:id`.
import { randomBytes } from "node:crypto";

export type IngestEvent = {
  id?: string;
  event_id?: string;
  source?: string;
  type?: string;
  occurred_at?: string;
  timestamp?: string;
  actor_id?: string;
  data?: Record<string, unknown>;
  [field: string]: unknown;
};

/** A UUIDv7 (RFC 9562) whose time part is `atMs` (Unix milliseconds). */
export function newEventId(atMs: number = Date.now()): string {
  const b = randomBytes(16);
  let ms = Math.floor(atMs);
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x70;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export interface Prepared {
  id: string;
  event: IngestEvent;
  body: string;
  bytes: number;
}

/**
 * A copy of the event with an id and the emit time, unless the caller named it (then it
 * keeps its id and gets no time from us, so emitting it again stays a duplicate on the
 * server).
 */
export function stamp(event: IngestEvent, emittedAtMs: number): IngestEvent {
  const fields: IngestEvent = { ...event };
  const id = fields.id ?? fields.event_id;
  if (id === undefined || id === null) {
    fields.id = newEventId(emittedAtMs);
    if (fields.occurred_at == null && fields.timestamp == null) {
      fields.occurred_at = new Date(emittedAtMs).toISOString();
    }
  }
  return fields;
}

/** stamp() the event and encode it. Throws when it is not JSON (a cycle, a BigInt). */
export function prepare(event: IngestEvent, emittedAtMs: number): Prepared {
  const fields = stamp(event, emittedAtMs);
  const body = JSON.stringify(fields);
  if (typeof body !== "string") throw new TypeError("an event must be a JSON object");
  const id = String(fields.id ?? fields.event_id);
  return { id, event: fields, body, bytes: Buffer.byteLength(body) };
}

export function batchBody(items: readonly Prepared[]): string {
  return `{"events":[${items.map((i) => i.body).join(",")}]}`;
}
