// TypeScript SDK (clients/typescript, built with `npm run build` there) under load.
//
//   node benchmarks/sdk_node.mjs emit URL EVENTS RATE        emit() cost per call (RATE 0: burst)
//   node benchmarks/sdk_node.mjs throughput URL EVENTS BATCH  events/s through one Client
//
// Prints one line "SDK_JSON {...}". Driven by sdk_emit.py --lang node and
// sdk_throughput.py --lang node, which start the server (or slow / refusing port).
// emit: each call timed alone with process.hrtime.bigint(); paced runs yield to the event
// loop (setTimeout) between groups of 100 calls so the sender can run, as in a service.
// throughput: maxQueue = EVENTS, emit all (yielding every 1,000), then flush().

import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const { Client } = await import(path.join(here, "..", "clients", "typescript", "dist", "src", "index.js"));

const [mode, url, eventsArg, extraArg] = process.argv.slice(2);
const events = Number(eventsArg);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function event(i) {
  return {
    source: "bench",
    type: "page.viewed",
    actor_id: "user-48213",
    data: { url: "https://shop.example.com/products/12345", i },
  };
}

function percentiles(ns) {
  const s = Float64Array.from(ns).sort();
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))] / 1000;
  let sum = 0;
  for (const v of s) sum += v;
  return {
    p50_us: at(0.5),
    p90_us: at(0.9),
    p99_us: at(0.99),
    p999_us: at(0.999),
    max_us: s[s.length - 1] / 1000,
    mean_us: sum / s.length / 1000,
  };
}

async function emitCost(rate) {
  let dropped = 0;
  const client = new Client(url, { onDrop: () => dropped++, handleExit: false });
  const samples = new Float64Array(events);
  const started = performance.now();
  for (let i = 0; i < events; i++) {
    const ev = event(i);
    const t0 = process.hrtime.bigint();
    client.emit(ev);
    samples[i] = Number(process.hrtime.bigint() - t0);
    if (i % 100 === 99) {
      const pause = rate > 0 ? started + ((i + 1) * 1000) / rate - performance.now() : 0;
      if (rate > 0) await sleep(Math.max(0, pause));
    }
  }
  const elapsed = (performance.now() - started) / 1000;
  const stats = client.stats;
  await client.close(1000);
  return { ...percentiles(samples), events, calls_per_s: events / elapsed, stats_before_close: stats, dropped_total: dropped };
}

async function throughput(batchSize) {
  let dropped = 0;
  const client = new Client(url, { batchSize, maxQueue: events + 1, onDrop: () => dropped++, handleExit: false });
  const t0 = performance.now();
  for (let i = 0; i < events; i++) {
    client.emit(event(i));
    if (i % 1000 === 999) await sleep(0);
  }
  const emitted = performance.now();
  const flushed = await client.flush(300_000);
  const seconds = (performance.now() - t0) / 1000;
  const stats = client.stats;
  await client.close(1000);
  return { events, batch: batchSize, seconds, emit_seconds: (emitted - t0) / 1000, flushed, events_per_s: events / seconds, stats, dropped };
}

const result = mode === "emit" ? await emitCost(Number(extraArg)) : await throughput(Number(extraArg));
process.stdout.write(`SDK_JSON ${JSON.stringify({ node: process.version, ...result })}\n`);
