"""When a store process sweeps expired leases: every lease/3 seconds, not on every claim."""

from __future__ import annotations


class RescueSchedule:
    """A claim sweeps the leases that ran out (their workers died or stalled) only when a
    third of the lease has passed since the last sweep: a dead worker's jobs wait at most
    lease/3 longer, and a busy worker's claims skip the sweep's statement. The first claim
    of a process always sweeps; so does one whose clock reads earlier than the last sweep."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._next = float("-inf")

    def due(self, now: float, lease: float) -> bool:
        """True (and the next sweep scheduled) when a claim at `now` should sweep."""
        if now < self._next and now >= self._last:
            return False
        self._last, self._next = now, now + lease / 3
        return True

    def missed(self) -> None:
        """The sweep's transaction failed: the next claim sweeps again."""
        self._next = float("-inf")
