"""A de-duplicating, rate-limited, delaying work queue, with client-go's guarantees, for asyncio.

* Fair: items are processed in the order they are added.
* Stingy: an item added many times before it is processed is processed once.
* Exclusive: one item is never processed by two workers at once; an item added while it is
  being processed is queued again when `done` is called.
* Delaying: `add_after` queues an item later; if it is already waiting, the earlier time wins.
* Rate limited: `add_rate_limited` waits per the limiter (per-item exponential back-off by
  default); `forget` resets the item's back-off and `num_requeues` reports it.
* Shut down cleanly: `get` returns None to every worker once the queue is shut down and empty.
* Measured, as client-go's: a named queue reports to the metrics provider the process installed
  (`set_metrics_provider`; the control plane's are Kubernetes' workqueue_* metrics), else to none.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from ketch import memtrim

T = TypeVar("T", bound=Hashable)


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base * 2^failures, capped at max_delay, per item."""

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base = base
        self.max_delay = max_delay
        self.failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self.failures.get(item, 0)
        self.failures[item] = n + 1
        if n > 62:
            return self.max_delay
        return min(self.base * (2**n), self.max_delay)

    def forget(self, item: Hashable) -> None:
        self.failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self.failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket: qps tokens per second, at most burst saved up."""

    def __init__(self, qps: float = 10.0, burst: int = 100) -> None:
        self.qps = qps
        self.burst = burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def when(self, item: Hashable) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.qps)
        self.last = now
        self.tokens -= 1
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.qps

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    def __init__(self, *limiters: RateLimiter) -> None:
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter() -> RateLimiter:
    """client-go's default: per-item 5 ms doubling to 1000 s, and 10 qps with burst 100 overall."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100))


class QueueMetrics(Protocol):
    """What a queue reports (client-go's queueMetrics): each add, each get, each done, each
    rate-limited re-add, and the items still queued when it shuts down."""

    def add(self, item: Hashable) -> None: ...

    def get(self, item: Hashable) -> None: ...

    def done(self, item: Hashable) -> None: ...

    def retry(self) -> None: ...

    def shutdown(self, left: int) -> None: ...


_metrics_provider: Callable[[str], QueueMetrics] | None = None


def set_metrics_provider(provider: Callable[[str], QueueMetrics] | None) -> None:
    """Queues made from now on (with a name) report to provider(name); client-go's SetProvider."""
    global _metrics_provider
    _metrics_provider = provider


class WorkQueue(Generic[T]):
    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()
        self.metrics = _metrics_provider(name) if name and _metrics_provider is not None else None
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[T, tuple[float, asyncio.TimerHandle]] = {}
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: T) -> None:
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if self.metrics is not None:
            self.metrics.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def add_after(self, item: T, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        waiting = self._delayed.get(item)
        if waiting is not None:
            if waiting[0] <= at:
                return
            waiting[1].cancel()
        handle = loop.call_at(at, self._ready, item)
        self._delayed[item] = (at, handle)

    def _ready(self, item: T) -> None:
        self._delayed.pop(item, None)
        self.add(item)

    def add_rate_limited(self, item: T) -> None:
        if self.metrics is not None:
            self.metrics.retry()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    async def get(self) -> T | None:
        """The next item (mark it done when finished), or None once shut down."""
        while not self._queue:
            if self._shutting_down:
                return None
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake_one()
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        memtrim.release_if_emptied(self._dirty)
        if self.metrics is not None:
            self.metrics.get(item)
        return item

    def done(self, item: T) -> None:
        self._processing.discard(item)
        memtrim.release_if_emptied(self._processing)
        if self.metrics is not None:
            self.metrics.done(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()

    def shutdown(self) -> None:
        if self.metrics is not None and not self._shutting_down:
            self.metrics.shutdown(len(self._dirty))
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
