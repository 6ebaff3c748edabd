"""An event recorder, as client-go's: controllers report what they did as Event objects.

Recording never blocks the caller and never fails it: events are queued and written in batches
by a background task. As Kubernetes' event correlator does, it
* aggregates repeats: the same (object, type, reason, message) within ten minutes bumps the
  count and lastTimestamp of the Event already written instead of creating another (many
  repeats between two writes cost one write);
* filters spam: each object may have a burst of 25 events, then one per five minutes (a pod
  the scheduler retries a thousand times does not write a thousand events).
Both remember at most MAX_REMEMBERED keys, least recently used first out, as client-go's LRU
caches do: under churn (thousands of short-lived pods) memory and the cost of an event stay
flat; a key pushed out only loses its repeat count or its spam budget. What is remembered about
an object its controller saw deleted is dropped (`forget`): it can never be used again, and the
thousands of entries a large Job's pods left would otherwise stay until pushed out.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ketch.api import errors, timeutil
from ketch.api.kinds import info_of
from ketch.v1 import core_pb2

from .clientset import Batch, Client

log = logging.getLogger(__name__)

AGGREGATE_WINDOW = 600.0
MAX_REMEMBERED = 4096  # client-go's maxLruCacheEntries
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
FORGET_DELAY = 1.0  # seconds: deleted objects are dropped in one sweep per burst of deletes
CLOSE_DEADLINE = 5.0  # seconds close() gives the last events before dropping them

_Key = tuple[str, str, str, str]


@dataclass(slots=True)  # thousands are remembered: no dict each
class _Written:
    # What a repeat needs, as client-go's event logger keeps (name, count, first timestamp): the
    # repeat is a merge patch of count and lastTimestamp. The Event's name is its object's name
    # and these nanoseconds, so the ~450 bytes of the Event itself are not kept.
    created_ns: int
    count: int

    @property
    def first_seen(self) -> float:
        return self.created_ns / 1e9

    def name(self, involved_name: str) -> str:
        return f"{involved_name}.{self.created_ns:x}"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float


class SpamFilter:
    """client-go's EventSourceObjectSpamFilter: a token bucket per key (an involved object), a
    burst of SPAM_BURST events, then one per SPAM_REFILL_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, burst: int = SPAM_BURST,
                 refill_seconds: float = SPAM_REFILL_SECONDS) -> None:
        self.clock = clock
        self.burst = burst
        self.refill_seconds = refill_seconds
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, key: str) -> bool:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > MAX_REMEMBERED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.last) / self.refill_seconds)
        bucket.last = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    def forget(self, uids: set[str]) -> None:
        """Drop the buckets of these objects: keyed by the uid, or by the uid and a suffix
        (`<uid>/pods`, a controller's budget for the events about an owner's pods)."""
        buckets = self._buckets
        kept = OrderedDict((k, b) for k, b in buckets.items() if k.partition("/")[0] not in uids)
        if len(kept) < len(buckets):
            self._buckets = kept


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._pending: list[core_pb2.Event] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._written: OrderedDict[_Key, _Written] = OrderedDict()
        self.spam = SpamFilter()
        self.dropped = 0
        self._gone: set[str] = set()  # uids of deleted objects, dropped at the next sweep
        self._sweep: asyncio.TimerHandle | None = None

    def event(self, obj: Any, etype: str, reason: str, message: str, spam_key: str = "") -> None:
        """Record an Event about obj (Normal or Warning). Events share the spam filter's budget
        by object, or by spam_key when given (a controller's many per-pod events about one owner
        can then use up their own budget, not the owner's)."""
        try:
            info = info_of(obj)
        except KeyError:
            return
        md = obj.metadata
        if not self.spam.allow(spam_key or md.uid or f"{md.namespace}/{md.name}"):
            self.dropped += 1
            return
        ev = core_pb2.Event(type=etype, reason=reason, message=message)
        ref = ev.involved_object
        ref.kind, ref.api_version, ref.name, ref.namespace, ref.uid = (
            info.kind, info.api_version, md.name, md.namespace, md.uid)
        ref.resource_version = md.resource_version
        ev.metadata.namespace = md.namespace or "default"
        ev.source.component = self.component
        if self.host:
            ev.source.host = self.host
        ev.reporting_component = self.component
        ev.reporting_instance = self.host or self.component
        self._pending.append(ev)
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"events-{self.component}")
        assert self._wakeup is not None
        self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(0.05)  # gather a burst into one batch
            # The batch lives in flush's frame only: held in this loop's, the last one's messages
            # (hundreds after a burst, ~1 KB each) stayed for as long as no event came.
            queued = len(self._pending)
            try:
                await self.flush()
            except errors.StatusError as err:
                log.debug("dropping %d events: %s", queued, err)
            except Exception:
                log.exception("writing events failed")

    async def _flush(self, pending: list[core_pb2.Event]) -> None:
        now = time.time()
        stamp = timeutil.format(now)
        # Repeats within this flush collapse into one write per key.
        counts: dict[_Key, tuple[core_pb2.Event, int]] = {}
        for ev in pending:
            # type and reason repeat: one string each (every read of a field makes a new one)
            k = (ev.involved_object.uid, sys.intern(ev.type), sys.intern(ev.reason), ev.message)
            first, n = counts.get(k, (ev, 0))
            counts[k] = (first, n + 1)
        batch = Batch()
        writes: list[tuple[_Key, _Written]] = []
        for k, (ev, n) in counts.items():
            written = self._written.get(k)
            if written is not None and now - written.first_seen < AGGREGATE_WINDOW:
                # A repeat: client-go's event logger patches the count and last timestamp.
                written = _Written(written.created_ns, written.count + n)
                batch.patch("Event", written.name(ev.involved_object.name),
                            {"count": written.count, "lastTimestamp": stamp}, namespace=ev.metadata.namespace)
            else:
                written = _Written(time.time_ns(), n)
                ev.first_timestamp = ev.last_timestamp = stamp
                ev.event_time = timeutil.format(now, micro=True)
                ev.count = n
                ev.metadata.name = written.name(ev.involved_object.name)
                batch.create(ev)
            writes.append((k, written))
        results = await self.client.batch(batch)
        remembered = self._written
        for (k, written), res in zip(writes, results, strict=True):
            if res.error is None:
                remembered[k] = written
                remembered.move_to_end(k)
            elif isinstance(res.error, errors.NotFound):
                remembered.pop(k, None)  # expired meanwhile: the next repeat creates anew
        while len(remembered) > MAX_REMEMBERED:
            remembered.popitem(last=False)

    def forget(self, uid: str) -> None:
        """The object uid was deleted: drop its repeat counts and spam budget (a moment later,
        in one pass for a whole burst of deletes; at once outside an event loop)."""
        if not uid or not (self._written or len(self.spam)):
            return
        self._gone.add(uid)
        if self._sweep is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._drop_forgotten()
                return
            self._sweep = loop.call_later(FORGET_DELAY, self._drop_forgotten)

    def _drop_forgotten(self) -> None:
        self._sweep = None
        gone, self._gone = self._gone, set()
        written = self._written
        kept = OrderedDict((k, w) for k, w in written.items() if k[0] not in gone)
        if len(kept) < len(written):
            self._written = kept
        self.spam.forget(gone)

    async def flush(self) -> None:
        """Write what is queued now (for shutdown and tests)."""
        pending, self._pending = self._pending, []
        if pending:
            await self._flush(pending)

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        # The last events are best effort, as client-go's broadcaster drops what it has not sent
        # at Shutdown: a store that does not answer must not hold up the process's exit.
        queued = len(self._pending)
        if not queued:
            return
        last = asyncio.ensure_future(self.flush())
        try:
            done, _ = await asyncio.wait({last}, timeout=CLOSE_DEADLINE)
        except asyncio.CancelledError:
            last.cancel()
            raise
        if not done:
            last.cancel()
            log.warning("%s: dropping %d events not written within %.0fs of closing", self.component,
                        queued, CLOSE_DEADLINE)
        elif last.exception() is not None:
            log.debug("%s: dropping %d events at close: %s", self.component, queued, last.exception())
