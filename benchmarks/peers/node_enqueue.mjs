// The Node peers' ingest endpoint: fastify reads the JSON body and enqueues it, then 202.
//
//   node node_enqueue.mjs bullmq|pgboss PORT REDIS_URL|POSTGRES_URL QUEUE
//
// bullmq: Queue.add (Redis; acknowledged once Redis has it in memory, AOF off here).
// pgboss: boss.send (one INSERT in PostgreSQL, committed: WAL flushed).
// Prints "READY PORT" once listening.
import Fastify from "fastify";

const [kind, portText, url, queueName] = process.argv.slice(2);
const port = Number(portText);
let enqueue;
if (kind === "bullmq") {
  const { Queue } = await import("bullmq");
  const { Redis } = await import("ioredis");
  // BullMQ in an ES module takes a constructed client, not connection options
  const connection = new Redis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, {
    connection,
    defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
  });
  await queue.waitUntilReady();
  enqueue = (body) => queue.add("event", body);
} else if (kind === "pgboss") {
  const { default: PgBoss } = await import("pg-boss");
  const boss = new PgBoss({ connectionString: url, max: 16 });
  await boss.start();
  await boss.createQueue(queueName);
  enqueue = (body) => boss.send(queueName, body);
} else {
  throw new Error(`unknown kind ${kind}`);
}
const app = Fastify({ logger: false });
app.post("/ingest", async (request, reply) => {
  const id = await enqueue(request.body);
  reply.code(202);
  return { status: "accepted", id: String(id) };
});
await app.listen({ port, host: "127.0.0.1" });
console.log(`READY ${port}`);
