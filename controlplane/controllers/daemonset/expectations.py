"""ControllerExpectations: how many creates and deletes a controller still waits to see.

The informer cache lags behind a controller's own writes; until the pods it created (or
deleted) show up in the cache, a sync must not act on the stale view or it would create
duplicates. Records expire after five minutes, as in Kubernetes, so a lost event cannot wedge a
DaemonSet forever.
"""

from __future__ import annotations

from ketch.client.clock import Clock

EXPECTATIONS_TTL = 300.0


class Expectations:
    def __init__(self, clock: Clock, ttl: float = EXPECTATIONS_TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self._records: dict[str, list[float]] = {}  # key -> [adds, dels, set at]

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        if rec[0] <= 0 and rec[1] <= 0:
            return True
        return self.clock.now() - rec[2] > self.ttl

    def set(self, key: str, adds: int, dels: int) -> None:
        self._records[key] = [adds, dels, self.clock.now()]

    def lower(self, key: str, adds: int = 0, dels: int = 0) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec[0] -= adds
            rec[1] -= dels

    def creation_observed(self, key: str) -> None:
        self.lower(key, adds=1)

    def deletion_observed(self, key: str) -> None:
        self.lower(key, dels=1)

    def pending(self, key: str) -> tuple[int, int]:
        rec = self._records.get(key)
        return (int(rec[0]), int(rec[1])) if rec else (0, 0)

    def delete(self, key: str) -> None:
        self._records.pop(key, None)
