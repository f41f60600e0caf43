// Client: emit() never blocks or throws; one async loop posts batches to /ingest/batch,
// retries with full jitter or the server's Retry-After, and reports what it gives up.
import { batchBody, prepare, stamp, type IngestEvent, type Prepared } from "./envelope.js";
import {
  DEFAULT_POLICY,
  delayMs,
  judgeBatch,
  judgeError,
  judgeWhole,
  type Answer,
  type RetryPolicy,
  type Verdict,
} from "./policy.js";

/** Why an event was given up; onDrop reasons start with one of these. */
export const DropReason = {
  /** emit() found the in-memory queue full. */
  QueueFull: "queue_full",
  /** The server refused the event (its problem detail follows); never retried. */
  Rejected: "rejected",
  /** Every attempt failed (no answer, 429, 5xx); the last error follows. */
  Exhausted: "attempts_exhausted",
  /** The client closed, or the process exited, before the event could be sent. */
  Closed: "closed",
  /** The event cannot be encoded as JSON. */
  Unserializable: "unserializable",
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

export type DropCallback = (event: IngestEvent, reason: string) => void;

export interface ClientOptions {
  apiKey?: string;
  /** Events per request (the server takes at most 1000). Default 100. */
  batchSize?: number;
  /** How long the oldest event may wait for a batch to fill. Default 50 ms. */
  lingerMs?: number;
  /** Events held in memory; beyond it emit() hands events to onDrop. Default 10,000. */
  maxQueue?: number;
  maxBatchBytes?: number;
  retry?: Partial<RetryPolicy>;
  /** Per-request timeout. Default 10 s. */
  timeoutMs?: number;
  /** Default: a console warning at most once a second, with counts by reason. */
  onDrop?: DropCallback;
  /** Bound on the flush when the process is about to exit. Default 5 s. */
  exitTimeoutMs?: number;
  /** Flush on 'beforeExit' and report leftovers on 'exit'. Default true. */
  handleExit?: boolean;
}

export interface Stats {
  /** Events the server accepted (duplicates of earlier attempts included). */
  sent: number;
  /** Event attempts after the first. */
  retried: number;
  /** Events handed to onDrop. */
  dropped: number;
  /** Events waiting in memory now. */
  queued: number;
}

export interface SendResult {
  status: "accepted" | "duplicate" | string;
  id: string;
  idempotencyKey: string | null;
  statusUrl: string | null;
  body: Record<string, unknown>;
}

export class ClientError extends Error {
  override name = "ClientError";
}

/** The server refused the event (a 4xx problem). */
export class EventRejected extends ClientError {
  override name = "EventRejected";
  constructor(
    readonly status: number,
    readonly problem: Record<string, unknown>,
  ) {
    super(`${status}: ${String(problem["detail"] ?? problem["title"] ?? "rejected")}`);
  }
}

/** The server did not accept the event after every attempt. */
export class SendFailed extends ClientError {
  override name = "SendFailed";
}

interface Queued {
  event: IngestEvent;
  at: number;
}

/** A FIFO with O(1) shift. */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

const USER_AGENT = "ingestd-node/0.1.0";

export class Client {
  readonly url: string;
  private readonly policy: RetryPolicy;
  private readonly headers: Record<string, string>;
  private readonly batchSize: number;
  private readonly lingerMs: number;
  private readonly maxQueue: number;
  private readonly maxBatchBytes: number;
  private readonly timeoutMs: number;
  private readonly exitTimeoutMs: number;
  private readonly onDrop: DropCallback;

  private readonly queue = new Fifo<Queued>();
  private carry: Prepared | null = null;
  private closed = false;
  private stopping = false;
  private deadline: number | null = null;
  private inflight = 0;
  private flushes = 0;
  private waker: (() => void) | null = null;
  private stopWakers: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly loop: Promise<void>;
  private counters = { sent: 0, retried: 0, dropped: 0 };
  private unreported = new Map<string, number>();
  private reportedAt = 0;
  private readonly beforeExit = (): void => void this.close(this.exitTimeoutMs);
  private readonly exit = (): void => this.drain(DropReason.Closed);
  private readonly handleExit: boolean;

  constructor(url: string, options: ClientOptions = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(`not an http(s) URL: ${url}`);
    }
    this.url = url.replace(/\/+$/, "");
    this.batchSize = options.batchSize ?? 100;
    if (!(this.batchSize >= 1 && this.batchSize <= 1000)) {
      throw new RangeError("batchSize must be between 1 and 1000 (the server's limit)");
    }
    this.lingerMs = options.lingerMs ?? 50;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.maxBatchBytes = options.maxBatchBytes ?? 900 * 1024;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.exitTimeoutMs = options.exitTimeoutMs ?? 5_000;
    this.policy = { ...DEFAULT_POLICY, ...options.retry };
    this.onDrop = options.onDrop ?? ((event, reason) => this.logDrop(event, reason));
    this.headers = { "content-type": "application/json", accept: "application/json", "user-agent": USER_AGENT };
    if (options.apiKey) this.headers["authorization"] = `Bearer ${options.apiKey}`;
    this.handleExit = options.handleExit ?? true;
    if (this.handleExit) {
      process.once("beforeExit", this.beforeExit);
      process.once("exit", this.exit);
    }
    this.loop = this.run();
  }

  /**
   * Queue an event and return at once; never throws, never waits on the network. The
   * SDK gives it an `id` (UUIDv7) and `occurred_at` once, so retries are idempotent.
   */
  emit(event: IngestEvent): void {
    try {
      const n = this.queue.length;
      if (this.closed || n >= this.maxQueue) {
        this.giveUpNow(event, this.closed ? DropReason.Closed : DropReason.QueueFull);
        return;
      }
      this.queue.push({ event: { ...event }, at: Date.now() });
      if (n === 0 || n + 1 >= this.batchSize) this.wake();
    } catch (err) {
      this.report([{ repr: String(event) }], `${DropReason.Unserializable}: ${String(err)}`);
    }
  }

  get stats(): Stats {
    return { ...this.counters, queued: this.pending() };
  }

  /** Send everything waiting now; false if `timeoutMs` ran out first. */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    this.flushes++;
    this.wake();
    try {
      return await this.untilSettled(timeoutMs);
    } finally {
      this.flushes--;
    }
  }

  /**
   * Stop accepting events, send what is queued for up to `timeoutMs`, stop. Events
   * still unsent at the deadline go to onDrop("closed: ...").
   */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.closed) return this.loop;
    this.closed = true;
    this.stopping = true;
    this.deadline = Date.now() + timeoutMs;
    if (this.handleExit) {
      process.removeListener("beforeExit", this.beforeExit);
      process.removeListener("exit", this.exit);
    }
    this.wake();
    for (const w of this.stopWakers.splice(0)) w();
    await this.loop;
    this.drain(DropReason.Closed);
    this.finalReport();
  }

  /**
   * POST one event to /ingest now and return the server's answer, retrying like the
   * sender. Throws EventRejected (4xx) or SendFailed.
   */
  async send(event: IngestEvent): Promise<SendResult> {
    if (this.closed) throw new ClientError("the client is closed");
    const item = prepare(event, Date.now());
    let last = "";
    for (let attempt = 1; ; attempt++) {
      let retryAfter: number | null = null;
      try {
        const answer = await this.post("/ingest", item.body, this.timeoutMs);
        if (answer.status >= 200 && answer.status < 300) return sendResult(answer);
        const verdict = judgeWhole(answer, 1);
        if (verdict.fates[0] !== "retry") {
          throw new EventRejected(answer.status, asRecord(answer.body) ?? { status: answer.status });
        }
        retryAfter = verdict.retryAfterMs;
        last = verdict.reasons[0] ?? "";
      } catch (err) {
        if (err instanceof EventRejected) throw err;
        last = describe(err);
      }
      if (attempt >= this.policy.maxAttempts) {
        throw new SendFailed(`not accepted after ${attempt} attempt(s): ${last}`);
      }
      await sleep(delayMs(this.policy, attempt, retryAfter), true);
    }
  }

  // -- the sender loop ------------------------------------------------------------------

  private pending(): number {
    return this.queue.length + (this.carry ? 1 : 0);
  }

  private settled(): boolean {
    return this.pending() === 0 && this.inflight === 0;
  }

  private wake(): void {
    const w = this.waker;
    this.waker = null;
    w?.();
  }

  private async run(): Promise<void> {
    for (;;) {
      try {
        const items = await this.collect();
        if (items.length > 0) await this.deliver(items);
        if (this.stopping && this.pending() === 0) break;
      } catch (err) {
        console.error("ingestd client: sender error", err);
        await sleep(this.policy.backoffBaseMs, false);
      }
      this.notifyIdle();
    }
    this.notifyIdle();
  }

  private async collect(): Promise<Prepared[]> {
    for (;;) {
      const n = this.pending();
      let wait: number | null = null;
      if (n > 0) {
        wait = this.carry ? 0 : this.lingerMs - (Date.now() - (this.queue.peek()?.at ?? 0));
        if (n >= this.batchSize || wait <= 0 || this.flushes > 0 || this.stopping) {
          const items = this.take();
          this.inflight = items.length;
          if (items.length > 0 || this.pending() === 0) return items;
          continue;
        }
      } else {
        if (this.stopping) return [];
        this.notifyIdle();
      }
      await new Promise<void>((resolve) => {
        this.waker = resolve;
        if (wait !== null) {
          setTimeout(() => this.wake(), Math.max(0, wait)).unref();
        }
      });
    }
  }

  private take(): Prepared[] {
    const items: Prepared[] = [];
    let size = 0;
    while (items.length < this.batchSize) {
      let item = this.carry;
      this.carry = null;
      if (item === null) {
        const next = this.queue.shift();
        if (next === undefined) break;
        try {
          item = prepare(next.event, next.at);
        } catch (err) {
          this.report([next.event], `${DropReason.Unserializable}: ${String(err)}`);
          continue;
        }
      }
      if (items.length > 0 && size + item.bytes + 1 > this.maxBatchBytes) {
        this.carry = item;
        break;
      }
      items.push(item);
      size += item.bytes + 1;
    }
    return items;
  }

  private async deliver(batch: Prepared[]): Promise<void> {
    const chunks: Prepared[][] = [batch];
    let attempt = 1;
    let lastError = "";
    try {
      while (chunks.length > 0) {
        const chunk = chunks[0] as Prepared[];
        const left = this.deadline === null ? this.timeoutMs : this.deadline - Date.now();
        if (left <= 0) {
          this.giveUp(chunks.flat(), closedReason(lastError));
          return;
        }
        let verdict: Verdict;
        try {
          const answer = await this.post("/ingest/batch", batchBody(chunk), Math.min(left, this.timeoutMs));
          verdict = judgeBatch(answer, chunk.length);
        } catch (err) {
          verdict = judgeError(chunk.length, describe(err));
        }
        chunks.shift();
        const retry: Prepared[] = [];
        const tooLarge: Prepared[] = [];
        chunk.forEach((item, i) => {
          const fate = verdict.fates[i];
          const reason = verdict.reasons[i] ?? "";
          if (fate === "sent") this.counters.sent++;
          else if (fate === "rejected") this.report([item.event], `${DropReason.Rejected}: ${reason}`);
          else if (fate === "too_large") tooLarge.push(item);
          else retry.push(item);
        });
        if (tooLarge.length === 1) {
          const reason = verdict.reasons.find((r) => r) ?? "413";
          this.report([(tooLarge[0] as Prepared).event], `${DropReason.Rejected}: ${reason}`);
        } else if (tooLarge.length > 1) {
          const half = Math.floor(tooLarge.length / 2);
          chunks.unshift(tooLarge.slice(0, half), tooLarge.slice(half));
        }
        if (retry.length === 0) continue;
        lastError = verdict.reasons.find((r) => r) ?? "";
        if (attempt >= this.policy.maxAttempts) {
          this.giveUp(retry, `${DropReason.Exhausted}: ${lastError}`);
          continue;
        }
        chunks.unshift(retry);
        this.counters.retried += retry.length;
        attempt++;
        const pause = delayMs(this.policy, attempt - 1, verdict.retryAfterMs);
        if (!(await this.pause(pause))) {
          this.giveUp(chunks.flat(), closedReason(lastError));
          return;
        }
      }
    } finally {
      this.inflight = 0;
    }
  }

  /** Wait before a retry; false when closing and the deadline comes first. */
  private async pause(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      if (this.deadline !== null && until > this.deadline) return false;
      const left = until - Date.now();
      if (left <= 0) return true;
      if (this.stopping) {
        await sleep(left, true); // closing: keep the process alive to finish
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        timer.unref();
        this.stopWakers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private async post(path: string, body: string, timeoutMs: number): Promise<Answer> {
    const res = await fetch(this.url + path, {
      method: "POST",
      headers: this.headers,
      body,
      signal: AbortSignal.timeout(Math.max(50, timeoutMs)),
    });
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  private async untilSettled(timeoutMs: number): Promise<boolean> {
    if (this.settled() && this.flushes === 0) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== check);
        resolve(false);
      }, timeoutMs);
      const check = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(check);
    });
  }

  private notifyIdle(): void {
    if (!this.settled()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  // -- where lost events go -------------------------------------------------------------

  private giveUpNow(event: IngestEvent, reason: DropReason): void {
    // Stamped with its id, not encoded: a full queue turns every emit() into a drop.
    this.report([stamp(event, Date.now())], reason);
  }

  private giveUp(items: Prepared[], reason: string): void {
    this.report(
      items.map((i) => i.event),
      reason,
    );
  }

  private drain(reason: DropReason): void {
    while (this.pending() > 0) this.giveUp(this.take(), reason);
  }

  private report(events: IngestEvent[], reason: string): void {
    this.counters.dropped += events.length;
    for (const event of events) {
      try {
        this.onDrop(event, reason);
      } catch (err) {
        console.error("ingestd client: onDrop threw", err);
      }
    }
  }

  private logDrop(_event: IngestEvent, reason: string): void {
    const code = reason.split(":", 1)[0] ?? reason;
    this.unreported.set(code, (this.unreported.get(code) ?? 0) + 1);
    const now = Date.now();
    if (now - this.reportedAt < 1000) return;
    this.reportedAt = now;
    const summary = [...this.unreported].map(([k, v]) => `${k}: ${v}`).join(", ");
    this.unreported.clear();
    console.warn(`ingestd client dropped events (${summary}), ${this.counters.dropped} in all; last: ${reason}`);
  }

  private finalReport(): void {
    if (this.unreported.size === 0) return;
    const summary = [...this.unreported].map(([k, v]) => `${k}: ${v}`).join(", ");
    this.unreported.clear();
    console.warn(`ingestd client dropped ${summary}; ${this.counters.dropped} in all`);
  }
}

function closedReason(lastError: string): string {
  return lastError ? `${DropReason.Closed}: ${lastError}` : DropReason.Closed;
}

function sleep(ms: number, keepAlive: boolean): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (!keepAlive) timer.unref();
  });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : "";
    return detail ? `${err.name}: ${err.message} (${detail})` : `${err.name}: ${err.message}`;
  }
  return String(err);
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

function sendResult(answer: Answer): SendResult {
  const body = asRecord(answer.body) ?? {};
  const status = String(body["status"] ?? (answer.status === 200 ? "duplicate" : "accepted"));
  const id = status === "duplicate" ? (body["original_id"] ?? body["id"]) : (body["id"] ?? body["event_id"]);
  return {
    status,
    id: String(id ?? ""),
    idempotencyKey: typeof body["idempotency_key"] === "string" ? body["idempotency_key"] : null,
    statusUrl: typeof body["status_url"] === "string" ? body["status_url"] : null,
    body,
  };
}
