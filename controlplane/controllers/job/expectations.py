"""Controller expectations (client-go's ControllerExpectations), for the Job controller.

The informer cache lags behind the controller's own writes. Before creating N pods the
controller expects N creations; each pod the informer then delivers lowers the count (a
failed create lowers it at once). Until the counts reach zero the controller makes no new
create/delete decisions for that Job, so a second sync cannot create duplicates. A record
older than five minutes counts as satisfied, so a lost event cannot wedge a Job. In memory
only: after a restart the informers start from a fresh list, which needs no expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

EXPECTATIONS_TTL = 300.0


@dataclass(slots=True)
class _Record:
    add: int
    delete: int
    timestamp: float


class ControllerExpectations:
    def __init__(self, now: Callable[[], float], ttl: float = EXPECTATIONS_TTL) -> None:
        self._now = now
        self.ttl = ttl
        self._records: dict[str, _Record] = {}

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        if rec.add <= 0 and rec.delete <= 0:
            return True
        return self._now() - rec.timestamp > self.ttl

    def set(self, key: str, add: int, delete: int) -> None:
        self._records[key] = _Record(add, delete, self._now())

    def expect_creations(self, key: str, n: int) -> None:
        self.set(key, n, 0)

    def expect_deletions(self, key: str, n: int) -> None:
        self.set(key, 0, n)

    def lower(self, key: str, add: int = 0, delete: int = 0) -> None:
        rec = self._records.get(key)
        if rec is not None:
            rec.add -= add
            rec.delete -= delete

    def creation_observed(self, key: str) -> None:
        self.lower(key, add=1)

    def deletion_observed(self, key: str) -> None:
        self.lower(key, delete=1)

    def delete(self, key: str) -> None:
        self._records.pop(key, None)

    def get(self, key: str) -> tuple[int, int] | None:
        rec = self._records.get(key)
        return None if rec is None else (rec.add, rec.delete)
