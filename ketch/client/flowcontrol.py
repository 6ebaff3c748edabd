"""Per-key exponential back-off: client-go's flowcontrol.Backoff, shared by the DaemonSet
controller (failed daemon pods per node) and the agent (crash-loop restarts per container).

A key's delay starts at `initial` and doubles up to `maximum` with each recorded failure; a key
whose last failure is older than 2 × maximum starts over. Pure: times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, at: float) -> bool:
        return at - entry.last_update > 2 * self.maximum

    def get(self, key: str) -> float:
        """The key's current delay (0: none recorded)."""
        entry = self._entries.get(key)
        return entry.delay if entry is not None else 0.0

    def next(self, key: str, at: float, now: float | None = None) -> float:
        """Record a failure at `at` (decided at `now`, by default the same); the new delay."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, at if now is None else now):
            entry = _Entry(self.initial, at)
            self._entries[key] = entry
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last_update = at
        return entry.delay

    def remaining(self, key: str, since: float, now: float) -> float:
        """Seconds left of the key's back-off counted from `since` (0: go now), as the kubelet's
        doBackOff. A failure more than 2 × maximum after the previous one starts over."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        if self._expired(entry, since):
            del self._entries[key]
            return 0.0
        left = since + entry.delay - now
        return left if left > 0 else 0.0

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        """client-go's IsInBackOffSinceUpdate: the delay has not passed since the last failure."""
        entry = self._entries.get(key)
        return entry is not None and now - entry.last_update < entry.delay

    def restore(self, key: str, delay: float, last_update: float) -> None:
        """Take back a delay remembered across a restart (the agent's checkpoints)."""
        if delay > 0:
            self._entries[key] = _Entry(delay, last_update)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key that starts with prefix (the agent's keys are `<pod uid>/<container>`)."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def gc(self, now: float) -> None:
        """Drop the keys whose back-off has expired."""
        self._entries = {k: e for k, e in self._entries.items() if not self._expired(e, now)}
