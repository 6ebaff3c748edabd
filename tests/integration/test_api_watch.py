"""Watches: every change once and in order from any revision in the window, across reconnects;
selector transitions; a clear Gone outside the window."""

from __future__ import annotations

import asyncio

import pytest

from ketch.api import errors
from ketch.v1 import core_pb2


def ns(name: str, **labels: str) -> core_pb2.Node:
    obj = core_pb2.Node()
    obj.metadata.name = name
    obj.metadata.labels.update(labels)
    return obj


async def collect(client, n: int, **kw) -> list:  # type: ignore[no-untyped-def]
    out = []
    async for ev in client.watch("Node", allow_bookmarks=False, **kw):
        out.append(ev)
        if len(out) == n:
            break
    return out


async def test_watch_from_a_past_revision_replays_every_change_once_in_order(api) -> None:
    _, start = await api.client.list("Node")
    for i in range(20):
        await api.client.create(ns(f"n{i}"))
    for i in range(0, 20, 2):
        await api.client.delete("Node", f"n{i}")
    events = await asyncio.wait_for(collect(api.client, 30, resource_version=start), 10)
    revs = [int(e.resource_version) for e in events]
    assert revs == sorted(revs) and len(set(revs)) == 30
    assert [e.type for e in events[:20]] == ["ADDED"] * 20
    assert [e.type for e in events[20:]] == ["DELETED"] * 10
    # Reconnect from the middle: exactly the rest, nothing twice.
    middle = events[14].resource_version
    rest = await asyncio.wait_for(collect(api.client, 15, resource_version=middle), 10)
    assert [e.resource_version for e in rest] == [e.resource_version for e in events[15:]]


async def test_watch_without_revision_starts_with_current_objects(api) -> None:
    for name in "abcde":
        await api.client.create(ns(name))
    events = await asyncio.wait_for(collect(api.client, 5), 10)
    assert {e.type for e in events} == {"ADDED"}
    assert {e.object.metadata.name for e in events} == set("abcde")


async def test_live_events_arrive_after_the_watch_starts(api) -> None:
    _, rv = await api.client.list("Node")
    task = asyncio.create_task(collect(api.client, 2, resource_version=rv))
    await asyncio.sleep(0.05)
    await api.client.create(ns("live"))
    await api.client.patch("Node", "live", {"metadata": {"labels": {"x": "y"}}})
    events = await asyncio.wait_for(task, 10)
    assert [e.type for e in events] == ["ADDED", "MODIFIED"]
    assert events[1].object.metadata.labels["x"] == "y"


async def test_label_selector_transitions_are_added_and_deleted(api) -> None:
    _, rv = await api.client.list("Node")
    await api.client.create(ns("t"))
    await api.client.patch("Node", "t", {"metadata": {"labels": {"team": "a"}}})
    await api.client.patch("Node", "t", {"metadata": {"labels": {"team": "b"}}})
    events = await asyncio.wait_for(collect(api.client, 2, resource_version=rv, label_selector="team=a"), 10)
    assert [e.type for e in events] == ["ADDED", "DELETED"]


async def test_too_old_resource_version_is_gone(api) -> None:
    api.hub.window_size = 5
    for i in range(10):
        await api.client.create(ns(f"g{i}"))
    with pytest.raises(errors.Gone, match="too old resource version"):
        await asyncio.wait_for(collect(api.client, 1, resource_version="1"), 10)


async def test_bookmarks_carry_the_latest_revision(api, monkeypatch) -> None:
    from controlplane.apiserver import service

    monkeypatch.setattr(service, "BOOKMARK_INTERVAL", 0.1)
    await api.client.create(ns("b"))
    _, rv = await api.client.list("Node")
    async for ev in api.client.watch("Node", resource_version=rv, allow_bookmarks=True):
        assert ev.type == "BOOKMARK"
        assert ev.resource_version == rv
        break


async def test_a_batch_commit_arrives_as_one_watch_list_and_plain_watch_sees_the_same(api) -> None:
    """WatchBatched sends the events ready together in one message; Watch streams them one by one."""

    from ketch.client.clientset import Batch
    from ketch.v1 import api_pb2, api_pb2_grpc

    _, rv = await api.client.list("Node")
    batch = Batch()
    for i in range(10):
        batch.create(ns(f"b{i}"))
    await api.client.batch(batch)
    req = api_pb2.WatchRequest(kind="Node", resource_version=rv)
    async with api.channel() as channel:
        stub = api_pb2_grpc.APIStub(channel)
        lists = stub.WatchBatched(req)
        first = await asyncio.wait_for(lists.read(), 10)
        lists.cancel()
        singles = []
        async for ev in stub.Watch(req):
            singles.append(ev)
            if len(singles) == 10:
                break
    assert len(first.events) == 10
    assert [e.resource_version for e in first.events] == [e.resource_version for e in singles]
    assert [core_pb2.Node.FromString(e.object.value).metadata.name for e in singles] == [f"b{i}" for i in range(10)]
