"""Requests in flight, as kube-apiserver's --max-requests-inflight and
--max-mutating-requests-inflight bound them.

A request over its limit is refused at once with TooManyRequests (HTTP 429, "Too many requests,
please try again later."), which clients retry after a jittered back-off, instead of queueing
without bound. Reads and writes have separate budgets, so a flood of writes never starves reads.
Long-running requests (watches, log streams) are not counted, and neither are the control
plane's own controllers, which call the API in-process and never pass through here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from controlplane import metrics
from ketch.api import errors

DEFAULT_MAX_REQUESTS_INFLIGHT = 400
DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT = 200
MUTATING_METHODS = frozenset({"Create", "Update", "Patch", "Delete", "Batch"})
# Not counted: they last as long as the client wants.
LONG_RUNNING_METHODS = frozenset({"Watch", "WatchBatched", "PodLogs", "Exec", "Attach"})
TOO_MANY_REQUESTS = "Too many requests, please try again later."


class MaxInFlight:
    """Counts requests being served; limit 0 means unlimited."""

    def __init__(self, max_readonly: int = DEFAULT_MAX_REQUESTS_INFLIGHT,
                 max_mutating: int = DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT) -> None:
        self.limits = {False: max_readonly, True: max_mutating}
        self.current = {False: 0, True: 0}
        self.refused = 0
        # apiserver_current_inflight_requests reports the most in flight during the last second.
        self._peak = {False: 0, True: 0}
        self._last_peak = {False: 0, True: 0}
        self._second = int(time.monotonic())
        metrics.track_inflight(self)

    def _roll(self) -> None:
        second = int(time.monotonic())
        if second != self._second:
            # The second that just ended becomes "the last second"; an idle gap reads as its current count.
            self._last_peak = self._peak if second == self._second + 1 else dict(self.current)
            self._peak = dict(self.current)
            self._second = second

    def watermarks(self) -> tuple[int, int]:
        """(read-only, mutating): the most requests in flight over the last second. Only reads
        (a scrape may run on another thread)."""
        second, current = int(time.monotonic()), self.current
        if second == self._second:
            peak = {k: max(self._peak[k], self._last_peak[k]) for k in (False, True)}
        elif second == self._second + 1:
            peak = {k: max(self._peak[k], current[k]) for k in (False, True)}
        else:
            peak = current
        return peak[False], peak[True]

    @contextmanager
    def slot(self, method: str) -> Iterator[None]:
        """Hold a slot while the request is served; raises TooManyRequests when none is free."""
        if method in LONG_RUNNING_METHODS:
            yield
            return
        mutating = method in MUTATING_METHODS
        limit = self.limits[mutating]
        if limit and self.current[mutating] >= limit:
            self.refused += 1
            raise errors.TooManyRequests(TOO_MANY_REQUESTS)
        n = self.current[mutating] = self.current[mutating] + 1
        self._roll()
        if n > self._peak[mutating]:
            self._peak[mutating] = n
        try:
            yield
        finally:
            self.current[mutating] -= 1
