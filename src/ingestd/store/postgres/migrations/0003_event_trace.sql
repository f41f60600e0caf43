-- W3C trace context of the request that brought each event (traceparent, then a space and
-- the tracestate if any): the worker continues that trace when it delivers the event.
-- NULL when the request carried none and tracing was off. A nullable column without a
-- default is a catalog change only (no partition is rewritten).
ALTER TABLE events ADD COLUMN trace text COLLATE "C";
