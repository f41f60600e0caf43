// ingestd for Node: `new Client(url).emit(event)` never blocks or throws; batches,
// retries with full jitter and Retry-After, client-assigned ids, onDrop for what is lost.
export {
  Client,
  ClientError,
  DropReason,
  EventRejected,
  SendFailed,
  type ClientOptions,
  type DropCallback,
  type SendResult,
  type Stats,
} from "./client.js";
export { newEventId, type IngestEvent } from "./envelope.js";
export { DEFAULT_POLICY, parseRetryAfter, type RetryPolicy } from "./policy.js";
