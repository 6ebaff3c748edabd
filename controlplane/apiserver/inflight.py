"""Requests in flight, as kube-apiserver's --max-requests-inflight and
--max-mutating-requests-inflight bound them.

A request over its limit is refused at once with TooManyRequests (HTTP 429, "Too many requests,
please try again later."), which clients retry after a jittered back-off, instead of queueing
without bound. Reads and writes have separate budgets, so a flood of writes never starves reads.
Long-running requests (watches, log streams) are not counted, and neither are the control
plane's own controllers, which call the API in-process and never pass through here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ketch.api import errors

DEFAULT_MAX_REQUESTS_INFLIGHT = 400
DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT = 200
MUTATING_METHODS = frozenset({"Create", "Update", "Patch", "Delete", "Batch"})
# Not counted: they last as long as the client wants.
LONG_RUNNING_METHODS = frozenset({"Watch", "WatchBatched", "PodLogs", "Exec"})
TOO_MANY_REQUESTS = "Too many requests, please try again later."


class MaxInFlight:
    """Counts requests being served; limit 0 means unlimited."""

    def __init__(self, max_readonly: int = DEFAULT_MAX_REQUESTS_INFLIGHT,
                 max_mutating: int = DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT) -> None:
        self.limits = {False: max_readonly, True: max_mutating}
        self.current = {False: 0, True: 0}
        self.refused = 0

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
        self.current[mutating] += 1
        try:
            yield
        finally:
            self.current[mutating] -= 1
