"""The watch hub: one window of recent events, fanned out to every watcher, filtered per watcher.

Events arrive from the Store after each commit, already in revision order. Each watcher gets
only what its kind, namespace, label and field selectors let through; an object that starts or
stops matching a watcher's selectors shows up as ADDED or DELETED for that watcher, as
Kubernetes does. Registration and replay happen in one synchronous step on the event loop, so a
watcher never misses or repeats an event between its replay and the live stream.
"""

from __future__ import annotations

import asyncio
from collections import deque

from controlplane.storage import Entry, Store, WatchEvent
from ketch.api import errors
from ketch.api.selectors import FieldRequirement, Selector

DEFAULT_WINDOW = 50_000  # ~1-2 KB per event: bounded memory; bookmarks keep idle watchers inside it
DEFAULT_WATCHER_BACKLOG = 50_000


class Filter:
    def __init__(self, namespace: str, labels: Selector, fields: tuple[FieldRequirement, ...]) -> None:
        self.namespace = namespace
        self.labels = labels
        self.fields = fields

    def __call__(self, entry: Entry | None) -> bool:
        if entry is None:
            return False
        if self.namespace and entry.namespace != self.namespace:
            return False
        if self.labels and not self.labels.matches(entry.labels):
            return False
        for req in self.fields:
            if not req.matches_value(field_value(entry, req.field)):
                return False
        return True


def field_value(entry: Entry, name: str) -> str:
    if name == "metadata.name":
        return entry.name
    if name == "metadata.namespace":
        return entry.namespace
    return entry.fields.get(name, "")


class Watcher:
    """One client's stream: a queue of (type, entry, rev) filled by the hub."""

    def __init__(self, hub: WatchHub, kind: str, match: Filter, backlog: int) -> None:
        self.hub = hub
        self.kind = kind
        self.match = match
        self.backlog = backlog
        self.items: deque[tuple[str, Entry, int]] = deque()
        self.wakeup = asyncio.Event()
        self.error: errors.StatusError | None = None
        self.closed = False

    def offer(self, event: WatchEvent) -> None:
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
        self.items.append((kind, event.entry, event.rev))
        if len(self.items) > self.backlog:
            # A reader this slow would hold the whole window; it must relist instead.
            self.error = errors.Gone("watch closed: the client fell too far behind; relist and watch again")
            self.items.clear()
            self.close()
        self.wakeup.set()

    def push_initial(self, entry: Entry) -> None:
        self.items.append(("ADDED", entry, entry.rv))

    async def next_batch(self, timeout: float | None) -> list[tuple[str, Entry, int]] | None:
        """Queued events, waiting up to timeout; None when the wait timed out."""
        if not self.items and not self.closed:
            self.wakeup.clear()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                # lands as the event fires, and the watching task then never stops.
                async with asyncio.timeout(timeout):
                    await self.wakeup.wait()
            except TimeoutError:
                return None
        batch = list(self.items)
        self.items.clear()
        return batch

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.remove(self)
            self.wakeup.set()


class WatchHub:
    def __init__(self, store: Store, window: int = DEFAULT_WINDOW,
                 watcher_backlog: int = DEFAULT_WATCHER_BACKLOG) -> None:
        self.store = store
        self.window: deque[WatchEvent] = deque()
        self.window_size = window
        self.watcher_backlog = watcher_backlog
        # Every event with rev > window_start is in the window.
        self.window_start = store.revision
        self.watchers: dict[str, set[Watcher]] = {}
        store.add_listener(self._on_commit)

    def _on_commit(self, events: list[WatchEvent]) -> None:
        window = self.window
        for event in events:
            window.append(event)
            for w in tuple(self.watchers.get(event.entry.kind, ())):
                w.offer(event)
        while len(window) > self.window_size:
            self.window_start = window.popleft().rev

    def watch(self, kind: str, match: Filter, from_rev: int | None) -> Watcher:
        """Register a watcher; synchronous so nothing can commit between replay and live."""
        w = Watcher(self, kind, match, self.watcher_backlog)
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
                for event in self._since(from_rev):
                    if event.entry.kind == kind:
                        w.offer(event)
        self.watchers.setdefault(kind, set()).add(w)
        return w

    def _since(self, rev: int) -> list[WatchEvent]:
        window = self.window
        # Binary search on the (sorted) revisions of the window.
        lo, hi = 0, len(window)
        while lo < hi:
            mid = (lo + hi) // 2
            if window[mid].rev <= rev:
                lo = mid + 1
            else:
                hi = mid
        return [window[i] for i in range(lo, len(window))]

    def remove(self, w: Watcher) -> None:
        self.watchers.get(w.kind, set()).discard(w)

    def close_all(self) -> None:
        for ws in list(self.watchers.values()):
            for w in list(ws):
                w.close()
