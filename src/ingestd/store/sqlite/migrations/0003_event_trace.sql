-- W3C trace context of the request that brought each event (traceparent, then a space and
-- the tracestate if any): the worker continues that trace when it delivers the event.
-- NULL when the request carried none and tracing was off. Adding a nullable column
-- rewrites nothing.
ALTER TABLE events ADD COLUMN trace TEXT;
