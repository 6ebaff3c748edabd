"""The watch hub: one window of recent events, fanned out to every watcher, filtered per watcher.

Events arrive from the Store after each commit, already in revision order. Each watcher gets
only what its kind, namespace, label and field selectors let through; an object that starts or
stops matching a watcher's selectors shows up as ADDED or DELETED for that watcher, as
Kubernetes does. Registration and replay happen in one synchronous step on the event loop, so a
watcher never misses or repeats an event between its replay and the live stream.

What a watcher that does not keep up may hold is bounded (WatchLimits): its queue keeps
references to the hub's shared events (a slot each, not a copy), and once more live events, or
bytes of them, wait than its limits allow since it last took any and that was backlog_grace ago
or more, or it has taken none for max_stall seconds while events wait, it is dropped, as
kube-apiserver drops a watcher whose buffer is full: its queue is freed at once and its stream ends
cleanly after what was already sent, so the client watches again from the last resourceVersion
it saw and gets what it missed from the window (or Gone, "too old resource version", if that has
passed, and relists). A client that stops reading altogether fills its HTTP/2 flow-control
window and blocks the stream's write; it then holds at most the one message being written.

The window is bounded by count (DEFAULT_WINDOW events) and by age, as kube-apiserver's watch
cache keeps about 75 s of history (its eventFreshDuration): beyond MIN_WINDOW events, those older
than EVENT_FRESH seconds leave it at the next commit, or by a timer when nothing commits. Without
the age bound, the versions of 10,000 deleted pods stayed in memory until 50,000 newer events had
pushed them out. Beyond its newest HOT_EVENTS, the window keeps its events packed (watchpack.py),
not as objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controlplane import metrics
from controlplane.storage import Entry, Store, WatchEvent
from controlplane.storage.store import Version
from ketch.api import errors
from ketch.api.selectors import FIELDS_ON_READ, FieldRequirement, Selector

from .watchpack import Window

DEFAULT_WINDOW = 50_000  # ~1-2 KB per event: bounded memory; bookmarks keep idle watchers inside it
DEFAULT_WATCHER_BACKLOG = 50_000
EVENT_FRESH = 75.0  # seconds of history the window keeps beyond MIN_WINDOW events
MIN_WINDOW = 1000  # events always kept, however old
HOT_EVENTS = 1000  # the newest events, kept as the objects the store published; older ones are packed
EXPIRY_SLACK = 5.0  # seconds the timed expiry waits past the oldest events' staleness (busy: commits do it)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchLimits:
    """How far one watcher may fall behind before it is dropped (0: no limit).

    Counted over the live events queued since the watcher last took its queue: the initial
    listing and the replay from a resourceVersion are bounded by the store and the window.
    The defaults are for clients over the network; the control plane's own controllers, in
    process, get only the event bound (they drain as fast as events come).
    """

    max_events: int = 1_000
    max_bytes: int = 4 * 1024 * 1024
    max_stall: float = 30.0
    # The backlog bounds count only once the writer has not taken its queue for this long: one
    # commit can publish more than max_events (a Job's 500 creates and the scheduler's binds
    # together), all at once, to a writer that has had no turn yet. Kubernetes' cacher likewise
    # closes a watcher only when it cannot take an event within a time budget.
    backlog_grace: float = 1.0


LOCAL_WATCH_LIMITS = WatchLimits(max_events=DEFAULT_WATCHER_BACKLOG, max_bytes=0, max_stall=0)


# A stored object's field values from its kind and bytes, for kinds the store keeps none for.
FieldsOnRead = Callable[[str, bytes], Mapping[str, str]]


def _no_fields_on_read(kind: str, data: bytes) -> Mapping[str, str]:
    # Matching nothing here would hide the mistake: a Filter with field requirements on such a
    # kind must be given the registry's reader (APIService._filter does).
    raise RuntimeError(f"this Filter cannot read the fields of a {kind}: it was given no fields_on_read")


class Filter:
    def __init__(self, namespace: str, labels: Selector, fields: tuple[FieldRequirement, ...],
                 fields_on_read: FieldsOnRead = _no_fields_on_read) -> None:
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.fields_on_read = fields_on_read

    def __call__(self, entry: Version | None) -> bool:
        if entry is None:
            return False
        if self.namespace and entry.namespace != self.namespace:
            return False
        if self.labels and not self.labels.matches(entry.labels):
            return False
        if self.fields:
            values = entry.fields
            if values is FIELDS_ON_READ:
                values = self.fields_on_read(entry.kind, entry.data)
            for req in self.fields:
                if not req.matches_value(field_value(entry, values, req.field)):
                    return False
        return True


def field_value(entry: Version, values: Mapping[str, str], name: str) -> str:
    if name == "metadata.name":
        return entry.name
    if name == "metadata.namespace":
        return entry.namespace
    return values.get(name, "")


# A queued item: a live event (shared with the hub's window), the same with the type this
# watcher's selectors give it, or an object of the initial listing.
_Item = WatchEvent | tuple[str, WatchEvent] | Entry


class Watcher:
    """One client's stream: a queue filled by the hub, taken by the stream's writer."""

    def __init__(self, hub: WatchHub, kind: str, match: Filter, limits: WatchLimits) -> None:
        self.hub = hub
        self.kind = kind
        self.match = match
        self.max_events, self.max_bytes, self.max_stall = limits.max_events, limits.max_bytes, limits.max_stall
        self.backlog_grace = limits.backlog_grace
        self.items: deque[_Item] = deque()
        # Live events and their bytes queued since the writer last took the queue.
        self.pending_events = 0
        self.pending_bytes = 0
        self.taken_at = hub.clock()
        self.waiting = False  # the writer waits for events: it is not behind, however long it waits
        self.wakeup = asyncio.Event()
        self.closed = False

    def offer(self, event: WatchEvent, replay: bool = False) -> None:
        if self.closed:
            return
        new_ok = event.type != "DELETED" and self.match(event.entry)
        old_ok = self.match(event.prev)
        if new_ok:
            kind = "MODIFIED" if old_ok else "ADDED"
        elif old_ok:
            kind = "DELETED"
        else:
            return
        # The shared event itself when this watcher sees it as the store does (nearly always);
        # a pair only when its selectors make a change an ADDED or a DELETED.
        self.items.append(event if kind == event.type else (kind, event))
        if not replay:
            if self.waiting and not self.pending_events:
                self.taken_at = self.hub.clock()  # it had nothing to take until now: not behind
            self.pending_events += 1
            self.pending_bytes += len(event.entry.data)
            over = (self.pending_events > self.max_events > 0) or (self.pending_bytes > self.max_bytes > 0)
            stall_counts = self.max_stall and not self.waiting
            behind = self.hub.clock() - self.taken_at if over or stall_counts else 0.0
            if (over and behind >= self.backlog_grace) or (stall_counts and behind > self.max_stall):
                # A reader this slow would hold ever more: it watches again from where it is.
                log.warning("forcing %s watcher close due to unresponsiveness: %d events, %d bytes waiting, "
                            "%.1fs since it took any", self.kind, self.pending_events, self.pending_bytes, behind)
                metrics.watcher_terminated(self.kind)
                self.items.clear()
                self.close()
        self.wakeup.set()

    def push_initial(self, entry: Entry) -> None:
        self.items.append(entry)

    @staticmethod
    def _event(item: _Item) -> tuple[str, Version, int]:
        if isinstance(item, WatchEvent):
            return item.type, item.entry, item.rev
        if isinstance(item, Entry):
            return "ADDED", item, item.rv
        kind, event = item
        return kind, event.entry, event.rev

    async def next_batch(self, timeout: float | None) -> list[tuple[str, Version, int]] | None:
        """Queued events, waiting up to timeout; None when the wait timed out."""
        try:
            if not self.items and not self.closed:
                self.wakeup.clear()
                self.waiting = True
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                    # lands as the event fires, and the watching task then never stops.
                    async with asyncio.timeout(timeout):
                        await self.wakeup.wait()
                except TimeoutError:
                    return None
                finally:
                    self.waiting = False
            event_type = WatchEvent
            batch = [(item.type, item.entry, item.rev) if type(item) is event_type else self._event(item)
                     for item in self.items]
            self.items.clear()
            return batch
        finally:
            self.taken_at = self.hub.clock()
            self.pending_events = self.pending_bytes = 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.remove(self)
            self.wakeup.set()


class WatchHub:
    def __init__(self, store: Store, window: int = DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.monotonic, fresh: float = EVENT_FRESH,
                 min_window: int = MIN_WINDOW, on_dropped: Callable[[int], None] | None = None,
                 hot_events: int = HOT_EVENTS, expiry_slack: float = EXPIRY_SLACK) -> None:
        self.store = store
        self.window = Window(hot_events)
        self.window_size = window
        self.clock = clock
        self.fresh = fresh
        self.min_window = min_window
        # When each commit's events joined the window: (time, how many of them are left in it).
        self._ages: deque[list[float | int]] = deque()
        self._on_dropped = on_dropped  # told how many events left the window by age (memory freed)
        self._expiry: asyncio.TimerHandle | None = None  # when the oldest events go stale uncommitted
        self._expiry_slack = expiry_slack
        # Every event with rev > window_start is in the window.
        self.window_start = store.revision
        self.watchers: dict[str, set[Watcher]] = {}
        store.add_listener(self._on_commit)
        store.add_reset_listener(self._on_reset)

    def _on_reset(self) -> None:
        """The store reloaded (the etcd history it followed was compacted): what it published was
        a difference, so every watch ends and resumes from a list, as after kube-apiserver's
        cacher relists."""
        self.window.clear()
        self._ages.clear()
        self._cancel_expiry()
        self.window_start = self.store.revision
        self.close_all()

    def _on_commit(self, events: list[WatchEvent]) -> None:
        window = self.window
        for event in events:
            window.append(event)
            for w in tuple(self.watchers.get(event.entry.kind, ())):
                w.offer(event)
        if events:
            self._ages.append([self.clock(), len(events)])
        while len(window) > self.window_size:
            self._pop_oldest()
        self._drop_stale()

    def _drop_stale(self) -> None:
        """History older than fresh leaves (beyond the floor of min_window events): at each
        commit, and when nothing commits, by a timer set for the oldest events' staleness, so
        a cluster that goes quiet after a big Job does not keep its versions until the next write."""
        stale = self.clock() - self.fresh
        dropped = 0
        while len(self.window) > self.min_window and self._ages and self._ages[0][0] < stale:
            self._pop_oldest()
            dropped += 1
        if dropped and self._on_dropped is not None:
            self._on_dropped(dropped)
        if self._expiry is None and len(self.window) > self.min_window and self._ages:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop to wait in (a synchronous caller): the next commit looks again
            due = float(self._ages[0][0]) + self.fresh - self.clock()
            self._expiry = loop.call_later(max(due, 0.0) + self._expiry_slack, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        self._drop_stale()

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _pop_oldest(self) -> None:
        self.window_start = self.window.popleft()
        oldest = self._ages[0]
        oldest[1] -= 1
        if oldest[1] <= 0:
            self._ages.popleft()

    def watch(self, kind: str, match: Filter, from_rev: int | None,
              limits: WatchLimits = LOCAL_WATCH_LIMITS) -> Watcher:
        """Register a watcher; synchronous so nothing can commit between replay and live."""
        w = Watcher(self, kind, match, limits)
        if from_rev is None:
            for entry in self.store.list(kind, match.namespace):
                if match(entry):
                    w.push_initial(entry)
        else:
            if from_rev < self.window_start:
                raise errors.Gone(f"too old resource version: {from_rev} ({self.window_start + 1})")
            if from_rev > self.store.revision:
                # Only after a store was lost (memory store restarted): the client must relist.
                raise errors.Gone(f"too large resource version: {from_rev}, current: {self.store.revision}")
            if from_rev < self.store.revision:
                for event in self.window.since(from_rev, kind):
                    w.offer(event, replay=True)
        self.watchers.setdefault(kind, set()).add(w)
        return w

    def remove(self, w: Watcher) -> None:
        self.watchers.get(w.kind, set()).discard(w)

    def close_all(self) -> None:
        self._cancel_expiry()
        for ws in list(self.watchers.values()):
            for w in list(ws):
                w.close()
