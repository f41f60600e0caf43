// A trivial fast loopback HTTP server for measuring load generators (`ingestd bench`, wrk):
// reads each request body and answers 202 with a small JSON body, nothing else.
//
//   node benchmarks/trivial_server.mjs PORT [PROCESSES]
//
// With PROCESSES > 1 it forks that many node processes sharing the port (node:cluster).
// Prints "READY PORT" once listening.

import cluster from "node:cluster";
import http from "node:http";

const port = Number(process.argv[2] ?? 8199);
const processes = Number(process.argv[3] ?? 1);
const body = '{"status":"accepted"}';

if (cluster.isPrimary && processes > 1) {
  let ready = 0;
  for (let i = 0; i < processes; i++) {
    cluster.fork().on("message", () => {
      if (++ready === processes) console.log(`READY ${port}`);
    });
  }
} else {
  const server = http.createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      res.writeHead(202, { "content-type": "application/json", "content-length": body.length });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, "127.0.0.1", () => {
    if (cluster.isWorker) process.send?.("ready");
    else console.log(`READY ${port}`);
  });
}
