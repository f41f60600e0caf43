"""A destination's health as the console shows it: backlog and lag from the store, attempts
by verdict from this process's counters (the worker's, when it runs here)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ingestd.obs import metrics
from ingestd.store.protocol import DestinationBacklog, DestinationRow

ATTEMPTS_METRIC = "ingestd_deliveries"


@dataclass(frozen=True)
class Health:
    row: DestinationRow
    backlog: DestinationBacklog
    succeeded: float
    failed: float

    @property
    def ratio(self) -> float | None:
        """Succeeded share of the attempts this process made (None before any)."""
        total = self.succeeded + self.failed
        return self.succeeded / total if total else None

    @property
    def lag(self) -> float | None:
        due = self.backlog.oldest_due
        return max(0.0, time.time() - due) if due is not None else None

    @property
    def status(self) -> str:
        """One word for the list: disabled, open (breaker), failing, or healthy."""
        if not self.row.enabled:
            return "disabled"
        if self.row.breaker_state.value != "closed":
            return "breaker " + self.row.breaker_state.value.replace("_", "-")
        if self.row.failing_since is not None:
            return "failing"
        return "healthy"


def attempts_by_destination() -> dict[str, tuple[float, float]]:
    """(succeeded, failed) attempts per destination, read through the public collect()."""
    found: dict[str, list[float]] = {}
    for family in metrics.REGISTRY.collect():
        if family.name != ATTEMPTS_METRIC:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            name = sample.labels.get("destination", "")
            verdict = sample.labels.get("verdict", "")
            entry = found.setdefault(name, [0.0, 0.0])
            if verdict == "succeeded":
                entry[0] += sample.value
            elif verdict in ("retry", "dead"):
                entry[1] += sample.value
    return {name: (ok, bad) for name, (ok, bad) in found.items()}


def health_of(rows: list[DestinationRow], backlog: list[DestinationBacklog]) -> list[Health]:
    by_name = {b.destination: b for b in backlog}
    attempts = attempts_by_destination()
    return [
        Health(
            row,
            by_name.get(row.name, DestinationBacklog(destination=row.name)),
            *attempts.get(row.name, (0.0, 0.0)),
        )
        for row in rows
    ]
