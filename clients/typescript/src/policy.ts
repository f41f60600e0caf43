// Retry decisions, free of I/O: backoff with full jitter, Retry-After, per-item verdicts.

export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([408, 425, 429, 500, 502, 503, 504]);

export interface RetryPolicy {
  /** Attempts per event, the first included; then it goes to onDrop. */
  maxAttempts: number;
  /** Attempt n waits a random time in [0, min(cap, base * 2^(n-1))] milliseconds. */
  backoffBaseMs: number;
  backoffCapMs: number;
  /** A Retry-After longer than this is cut to it. */
  maxRetryAfterMs: number;
}

export const DEFAULT_POLICY: RetryPolicy = {
  maxAttempts: 8,
  backoffBaseMs: 100,
  backoffCapMs: 10_000,
  maxRetryAfterMs: 300_000,
};

/** Full jitter: uniform in [0, exponential ceiling]. */
export function backoffMs(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const ceiling = Math.min(policy.backoffCapMs, policy.backoffBaseMs * 2 ** Math.max(attempt - 1, 0));
  return random() * ceiling;
}

export function delayMs(policy: RetryPolicy, attempt: number, retryAfterMs: number | null): number {
  if (retryAfterMs !== null) return Math.min(retryAfterMs, policy.maxRetryAfterMs);
  return backoffMs(policy, attempt);
}

/** Milliseconds to wait from a Retry-After header (delta-seconds or HTTP-date). */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | null {
  if (value == null || value.trim() === "") return null;
  const text = value.trim();
  if (/^-?\d+(\.\d+)?$/.test(text)) return Math.max(0, Number(text) * 1000);
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(0, when - nowMs);
}

export type Fate = "sent" | "rejected" | "retry" | "too_large";

export interface Verdict {
  fates: Fate[];
  /** Why, for each event that is not sent ("" otherwise). */
  reasons: string[];
  retryAfterMs: number | null;
}

export interface Answer {
  status: number;
  headers: { get(name: string): string | null };
  body: unknown;
}

function problemText(status: number, problem: unknown): string {
  if (problem !== null && typeof problem === "object") {
    const p = problem as Record<string, unknown>;
    const text = String(p["detail"] ?? p["title"] ?? "");
    const code = typeof p["status"] === "number" ? p["status"] : status;
    return `${code} ${text}`.trim();
  }
  return String(status);
}

function all(n: number, fate: Fate, reason: string, retryAfterMs: number | null = null): Verdict {
  return { fates: Array(n).fill(fate), reasons: Array(n).fill(reason), retryAfterMs };
}

/** No answer at all (refused, reset, timed out): every event is retried. */
export function judgeError(n: number, error: string): Verdict {
  return all(n, "retry", error);
}

/** Read the answer to POST /ingest/batch for n events. */
export function judgeBatch(answer: Answer, n: number): Verdict {
  if (answer.status === 207 || answer.status === 200) {
    const results = (answer.body as { results?: unknown } | null)?.results;
    if (Array.isArray(results) && results.length === n) return judgeItems(results);
    return judgeError(n, `${answer.status} answer without ${n} results`);
  }
  return judgeWhole(answer, n);
}

/** An answer that speaks for all n events at once. */
export function judgeWhole(answer: Answer, n: number): Verdict {
  const { status } = answer;
  if (status >= 200 && status < 300) return all(n, "sent", "");
  const reason = problemText(status, answer.body);
  if (status === 413) return all(n, "too_large", reason);
  if (RETRYABLE_STATUS.has(status)) {
    const retryAfter =
      status === 429 || status === 503 ? parseRetryAfter(answer.headers.get("retry-after")) : null;
    return all(n, "retry", reason, retryAfter);
  }
  return all(n, "rejected", reason);
}

function judgeItems(results: unknown[]): Verdict {
  const fates: Fate[] = [];
  const reasons: string[] = [];
  for (const item of results) {
    const r = (item ?? {}) as Record<string, unknown>;
    if (typeof item === "object" && item !== null && r["status"] !== "rejected" && !("error" in r)) {
      fates.push("sent");
      reasons.push("");
      continue;
    }
    const error = r["error"] as Record<string, unknown> | undefined;
    const code = typeof error?.["status"] === "number" ? error["status"] : 422;
    reasons.push(problemText(code, error ?? null));
    fates.push(RETRYABLE_STATUS.has(code) ? "retry" : "rejected");
  }
  return { fates, reasons, retryAfterMs: null };
}
