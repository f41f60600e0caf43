-- wrk script for ingestd: one file, three modes (the arguments after `--`).
--
--   wrk ... -s ingest.lua http://127.0.0.1:PORT/_bench/noop  -- noop   TAG
--   wrk ... -s ingest.lua http://127.0.0.1:PORT/ingest       -- single TAG
--   wrk ... -s ingest.lua http://127.0.0.1:PORT/ingest/batch -- batch  TAG [SIZE]
--
-- Every event carries a unique id "<TAG>-<thread>-<counter>", so each request is a new
-- event (no duplicate short-cut). No response() callback: wrk counts answers >= 400 in
-- errors.status itself, and a callback would cost wrk time on every answer.
-- done() prints one line "WRK_JSON {...}" with the figures, latencies in microseconds.

local threads = {}
local counter = 0
local mode = "single"
local tag = "t"
local size = 100
local path = "/"
thread_id = 0 -- a global: setup() sets it per thread with thread:set()

-- ~300 bytes per event, like a page-view from a web front end.
local function event(id)
  return '{"source":"bench","type":"page.viewed","id":"' .. id .. '",'
    .. '"actor_id":"user-48213","data":{"url":"https://shop.example.com/products/12345?ref=spring",'
    .. '"referrer":"https://www.google.com/","session":"s-8f14e45fceea167a5a36dedd4bea2543",'
    .. '"ua":"Mozilla/5.0 (X11; Linux x86_64)","w":1920,"h":1080}}'
end

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "single"
  tag = args[2] or tostring(os.time())
  size = tonumber(args[3] or "100")
  path = wrk.path
  wrk.headers["Content-Type"] = "application/json"
  if mode == "noop" then
    wrk.body = event("noop")
  end
end

function request()
  if mode == "noop" then
    return wrk.request()
  end
  if mode == "single" then
    counter = counter + 1
    return wrk.format("POST", path, nil, event(tag .. "-" .. thread_id .. "-" .. counter))
  end
  local parts = {}
  for i = 1, size do
    counter = counter + 1
    parts[i] = event(tag .. "-" .. thread_id .. "-" .. counter)
  end
  return wrk.format("POST", path, nil, '{"events":[' .. table.concat(parts, ",") .. "]}")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"non2xx":%d,'
      .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,'
      .. '"p50":%d,"p90":%d,"p95":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    e.status,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9)))
end
