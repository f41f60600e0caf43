"""Python handler destinations that the integration tests configure (`handlers.sinks:...`)."""
