// BullMQ's worker draining COUNT no-op jobs that are already queued, concurrency 64.
//
//   node bullmq_drain.mjs REDIS_URL QUEUE COUNT [CONCURRENCY]
//
// Adds COUNT jobs with addBulk first (not timed), then starts a Worker whose processor
// returns at once; prints one JSON line {"jobs": n, "seconds": s} from the first
// completion to the last, then exits.
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";

const [url, queueName, countText, concurrencyText] = process.argv.slice(2);
const count = Number(countText);
// BullMQ in an ES module takes constructed clients (the worker blocks on its own)
const client = () => new Redis(url, { maxRetriesPerRequest: null });
const queue = new Queue(queueName, { connection: client() });
// Completed jobs are kept (removeOnComplete made BullMQ 6.7 fail with "Missing key for
// job" here) and the queue is obliterated at the end.
const options = {};
for (let start = 0; start < count; start += 1000) {
  const jobs = [];
  for (let i = start; i < Math.min(count, start + 1000); i++) {
    jobs.push({ name: "event", data: { source: "bench", type: "page.viewed", id: `d-${i}` }, opts: options });
  }
  await queue.addBulk(jobs);
}
let done = 0;
let first = 0;
const finished = new Promise((resolve) => {
  const worker = new Worker(queueName, async () => {}, {
    connection: client(),
    concurrency: Number(concurrencyText ?? 64),
  });
  worker.on("completed", () => {
    if (done === 0) first = performance.now();
    done += 1;
    if (done === count) resolve(worker);
  });
});
const worker = await finished;
const seconds = (performance.now() - first) / 1000;
console.log(JSON.stringify({ jobs: done, seconds, jobs_per_s: done / seconds }));
await worker.close();
await queue.obliterate({ force: true });
process.exit(0); // open Redis handles would keep node running
