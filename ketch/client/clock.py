"""Time as controllers see it: injected, so that tests can step it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time in epoch seconds."""
        ...


class RealClock:
    def now(self) -> float:
        return time.time()
