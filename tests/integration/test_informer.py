"""Informers over real gRPC: list+watch into the cache, handlers, relist after Gone."""

from __future__ import annotations

import asyncio

from ketch.client.cache import DeletedFinalStateUnknown
from ketch.client.informer import Informer
from ketch.v1 import core_pb2
from tests.conftest import eventually


def ns(name: str) -> core_pb2.Node:
    obj = core_pb2.Node()
    obj.metadata.name = name
    return obj


async def test_informer_keeps_its_cache_and_calls_handlers(api) -> None:
    seen: list[tuple[str, str]] = []
    inf = Informer(api.client, "Node")
    inf.add_handler(on_add=lambda o: seen.append(("add", o.metadata.name)),
                    on_update=lambda old, new: seen.append(("update", new.metadata.name)),
                    on_delete=lambda o: seen.append(("delete", o.metadata.name)))
    await api.client.create(ns("before"))
    inf.start()
    try:
        assert await inf.wait_for_sync(5)
        assert inf.get("", "before") is not None
        await api.client.create(ns("x"))
        await api.client.patch("Node", "x", {"metadata": {"labels": {"a": "b"}}})
        await api.client.delete("Node", "x")
        await eventually(lambda: ("delete", "x") in seen, 5, what="the delete event")
        assert ("add", "x") in seen and ("update", "x") in seen
        assert inf.get("", "x") is None
    finally:
        await inf.stop()


async def test_informer_relists_after_too_old_and_reports_unseen_deletions(api) -> None:
    deleted: list[object] = []
    inf = Informer(api.client, "Node")
    inf.add_handler(on_delete=deleted.append)
    await api.client.create(ns("doomed"))
    inf.start()
    try:
        assert await inf.wait_for_sync(5)
        await inf.stop()  # simulate a long disconnect
        await api.client.delete("Node", "doomed")
        api.hub.window_size = 1
        for i in range(5):
            await api.client.create(ns(f"fill{i}"))
        relists = inf.relists
        inf.start()
        await eventually(lambda: inf.relists > relists and inf.get("", "fill4") is not None, 5, what="a relist")
        assert any(isinstance(d, DeletedFinalStateUnknown) and d.key == "doomed" for d in deleted)
    finally:
        await inf.stop()
        await asyncio.sleep(0)
