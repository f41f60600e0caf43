"""The HTTP edge: the lean ingest path, the FastAPI app, problem responses."""
