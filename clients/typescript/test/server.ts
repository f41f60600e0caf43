// A real `ingestd serve` for the tests: free port, temporary SQLite file, kill -9, restart.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
export const INGESTD = process.env["INGESTD_BIN"] ?? join(REPO, ".venv", "bin", "ingestd");

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class IngestdServer {
  readonly dir = mkdtempSync(join(tmpdir(), "ingestd-ts-"));
  readonly log = join(this.dir, "server.log");
  private proc: ChildProcess | null = null;
  url = "";
  port = 0;

  /** `env`: extra INGESTD_* settings for this server. */
  constructor(private readonly env: Record<string, string> = {}) {}

  async start(): Promise<void> {
    if (!this.port) {
      this.port = await freePort();
      this.url = `http://127.0.0.1:${this.port}`;
    }
    const out = openSync(this.log, "a");
    this.proc = spawn(INGESTD, ["serve", "--host", "127.0.0.1", "--port", String(this.port)], {
      env: {
        ...process.env,
        INGESTD_DATABASE_URL: `sqlite:///${join(this.dir, "ingestd.db")}`,
        INGESTD_POLL_INTERVAL: "0.2",
        ...this.env,
      },
      stdio: ["ignore", out, out],
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) {
        throw new Error(`ingestd exited early:\n${readFileSync(this.log, "utf8")}`);
      }
      try {
        if ((await fetch(`${this.url}/ready`)).status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`ingestd not ready:\n${readFileSync(this.log, "utf8")}`);
  }

  /** kill -9: no shutdown code runs. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Every stored event of `source`, following the cursor. */
  async stored(source: string): Promise<Array<Record<string, any>>> {
    const events: Array<Record<string, any>> = [];
    let cursor: string | null = null;
    for (;;) {
      const params = new URLSearchParams({ source, limit: "1000" });
      if (cursor) params.set("cursor", cursor);
      const res = await fetch(`${this.url}/events?${params}`);
      if (res.status !== 200) throw new Error(`GET /events: ${res.status} ${await res.text()}`);
      const page = (await res.json()) as { events: Array<Record<string, any>>; next_cursor: string | null };
      events.push(...page.events);
      cursor = page.next_cursor;
      if (!cursor || page.events.length === 0) return events;
    }
  }
}

export function numbers(events: Array<Record<string, any>>): number[] {
  return events.map((e) => Number(e["data"]["i"])).sort((a, b) => a - b);
}

export function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}
