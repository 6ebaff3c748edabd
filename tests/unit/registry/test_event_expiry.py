"""When the store lets an Event go (EventStrategy.expires_at: its TTL after its last write), table-driven."""

from __future__ import annotations

import pytest

from controlplane.registry.core import EventStrategy
from ketch.api import timeutil
from ketch.v1 import core_pb2

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("last", "event_time", "created", "left"), [
    (NOW - 100, None, NOW - 5000, 3500),
    (None, NOW - 100, NOW - 5000, 3500),
    (None, None, NOW - 4000, -400),
    (NOW, NOW - 9999, NOW - 9999, 3600),
], ids=["lastTimestamp first", "then eventTime", "then creationTimestamp", "a repeat renews it"])
def test_expires_at(last: float | None, event_time: float | None, created: float, left: float) -> None:
    ev = core_pb2.Event()
    if last is not None:
        ev.last_timestamp = timeutil.format(last)
    if event_time is not None:
        ev.event_time = timeutil.format(event_time, micro=True)
    ev.metadata.creation_timestamp = timeutil.format(created)
    assert EventStrategy(ttl=3600).expires_at(ev) - NOW == pytest.approx(left)
