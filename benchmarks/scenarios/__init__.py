"""One module per scenario. Each has `run(ctx) -> dict` (the figures, JSON-able) and
`markdown(result) -> list[str]` (its lines in the dated summary); `TITLE` says what it is.

`ORDER` is the order run.py runs them in; `DEFAULT` is what `make bench` runs.
"""

from __future__ import annotations

ORDER = (
    "ceiling",
    "single",
    "handler",
    "batch",
    "normal",
    "openloop",
    "mixed",
    "e2e",
    "rss",
    "ingest",
    "worker",
    "peers",
)
DEFAULT = ("ceiling", "single", "batch", "normal", "rss", "e2e")
