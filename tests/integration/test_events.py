"""The event recorder: repeats aggregate into one Event's count; spam from one object is capped."""

from __future__ import annotations

from ketch.client.events import SPAM_BURST, EventRecorder
from ketch.v1 import core_pb2


async def _node(api) -> core_pb2.Node:  # type: ignore[no-untyped-def]
    node = core_pb2.Node()
    node.metadata.name = "n1"
    return await api.client.create(node)


async def _events(api) -> list:  # type: ignore[no-untyped-def]
    items, _ = await api.client.list("Event", "default")
    return items


async def test_repeats_bump_the_count_of_one_event(api) -> None:
    node = await _node(api)
    rec = EventRecorder(api.client, "test")
    for _ in range(3):
        rec.event(node, "Warning", "Flaky", "it happened")
    await rec.flush()
    rec.event(node, "Warning", "Flaky", "it happened")
    await rec.flush()
    (ev,) = await _events(api)
    assert ev.count == 4 and ev.reason == "Flaky" and ev.involved_object.name == "n1"
    assert ev.source.component == "test"


async def test_one_object_cannot_flood_the_event_store(api) -> None:
    node = await _node(api)
    rec = EventRecorder(api.client, "test")
    for i in range(SPAM_BURST + 40):
        rec.event(node, "Normal", "Tick", f"tick {i}")
    await rec.flush()
    assert len(await _events(api)) == SPAM_BURST
    assert rec.dropped == 40


async def test_a_spam_key_gives_many_related_events_a_budget_of_their_own(api) -> None:
    """A Job's per-pod events (keyed apart) use up their own budget; the Job's own events still go."""
    node = await _node(api)
    rec = EventRecorder(api.client, "test")
    for i in range(SPAM_BURST + 10):
        rec.event(node, "Normal", "SuccessfulCreate", f"Created pod: p{i}", spam_key=node.metadata.uid + "/pods")
    rec.event(node, "Normal", "Completed", "Job completed")
    await rec.flush()
    reasons = [e.reason for e in await _events(api)]
    assert reasons.count("SuccessfulCreate") == SPAM_BURST
    assert reasons.count("Completed") == 1
