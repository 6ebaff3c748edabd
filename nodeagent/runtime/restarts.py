"""Crash-loop back-off and restart decisions (pure; the clock is passed in).

The kubelet's rules (flowcontrol.Backoff keyed by pod UID + container name): a container that
exits and must restart is restarted at once the first time; after that each restart waits
`base`, doubling up to `cap`, counted from the finish time of the run that just ended. A key
whose last failure is older than 2 × cap (10 min with the defaults) starts over.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Entry:
    backoff: float
    last_update: float


class BackOff:
    def __init__(self, base: float = 10.0, cap: float = 300.0) -> None:
        self.base = base
        self.cap = cap
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.last_update > 2 * self.cap

    def delay(self, key: str, finished_at: float, now: float) -> float:
        """Seconds left before the container may restart (0: restart now).

        Mirrors kubelet doBackOff: in back-off while `now - finished_at < backoff`.
        """
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        if finished_at - entry.last_update > 2 * self.cap:
            # The container ran long enough since the previous failure: start over.
            del self._entries[key]
            return 0.0
        left = finished_at + entry.backoff - now
        return left if left > 0 else 0.0

    def next(self, key: str, finished_at: float, now: float) -> float:
        """Record a restart made now after a run that finished at finished_at; the next delay."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            entry = _Entry(self.base, finished_at)
            self._entries[key] = entry
        else:
            entry.backoff = min(entry.backoff * 2, self.cap)
            entry.last_update = finished_at
        return entry.backoff

    def current(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.backoff if entry is not None else 0.0

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key of a pod (keys are `<pod uid>/<container>`)."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def restore(self, key: str, backoff: float, last_update: float) -> None:
        if backoff > 0:
            self._entries[key] = _Entry(backoff, last_update)


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a regular container that exited is run again under the pod's restartPolicy."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


def init_should_restart(policy: str, exit_code: int) -> bool:
    """A failed init container is retried unless the pod's restartPolicy is Never."""
    return exit_code != 0 and policy != "Never"
