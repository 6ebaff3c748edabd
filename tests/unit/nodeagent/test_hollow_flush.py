"""How hollow nodes send their pods' statuses: several Batch calls in flight at once (as many
kubelets write side by side), none writing one pod twice, and a call that fails leaves its pods
to be written again rather than forgotten."""

from __future__ import annotations

import asyncio
from typing import Any

from ketch.api import errors, meta
from ketch.client.clientset import BatchOutcome
from ketch.v1 import core_pb2
from nodeagent import hollow
from nodeagent.hollow import MAX_BATCH, MAX_INFLIGHT, HollowNodes


def bound_pod(name: str, node: str) -> core_pb2.Pod:
    p = core_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.spec.node_name = node
    p.spec.containers.add(name="c", image="busybox", command=["sleep", "3600"])
    return p


class Pods:
    def __init__(self, pods: list[core_pb2.Pod]) -> None:
        self.by_key = {meta.key_of(p): p for p in pods}

    def get(self, ns: str, name: str) -> core_pb2.Pod | None:
        return self.by_key.get(f"{ns}/{name}")


class SlowClient:
    """Answers each Batch call after a pause, failing the calls it is told to; counts how many
    are in flight at once and which pods each call writes."""

    def __init__(self, fail_calls: frozenset[int] = frozenset()) -> None:
        self.fail_calls = fail_calls
        self.calls: list[list[str]] = []
        self.inflight = 0
        self.most_inflight = 0

    async def batch(self, ops: list[Any]) -> list[BatchOutcome]:
        n = len(self.calls)
        self.calls.append([_name_of(op) for op in ops])
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        try:
            await asyncio.sleep(0.02)
        finally:
            self.inflight -= 1
        if n in self.fail_calls:
            raise errors.Unavailable("the API server is overloaded")
        return [BatchOutcome(None, None) for _ in ops]


def _name_of(op: Any) -> str:
    pod = core_pb2.Pod()
    op.update.object.Unpack(pod)
    return pod.metadata.name


def nodes_with(pods: list[core_pb2.Pod], client: SlowClient) -> HollowNodes:
    h = HollowNodes("127.0.0.1:1", hollow.hollow_names("hollow", 10))
    h.client = client  # type: ignore[assignment]
    h.pods = Pods(pods)  # type: ignore[assignment]
    h.nodes = Pods([])  # type: ignore[assignment]
    h.dirty_pods = {meta.key_of(p) for p in pods}
    return h


async def test_a_flush_sends_its_calls_side_by_side_and_each_pod_once() -> None:
    pods = [bound_pod(f"p{i:04d}", f"hollow-{i % 10:04d}") for i in range(MAX_BATCH * 10 + 7)]
    client = SlowClient()
    h = nodes_with(pods, client)
    await h._flush()
    written = [name for call in client.calls for name in call]
    assert sorted(written) == sorted(p.metadata.name for p in pods)  # every pod, once
    assert len(client.calls) == 11 and max(len(c) for c in client.calls) == MAX_BATCH
    assert client.most_inflight == MAX_INFLIGHT
    assert not h.dirty_pods


async def test_the_pods_of_a_failed_call_are_written_again() -> None:
    pods = [bound_pod(f"p{i:04d}", "hollow-0001") for i in range(MAX_BATCH * 3)]
    client = SlowClient(fail_calls=frozenset({1}))
    h = nodes_with(pods, client)
    try:
        await h._flush()
    except errors.Unavailable:
        pass
    else:
        raise AssertionError("a failed call must be reported")
    assert h.dirty_pods == {f"default/{name}" for name in client.calls[1]}  # that call's pods, and only those
    assert h._kick.is_set()
    await h._flush()  # the next flush writes them
    assert [sorted(c) for c in client.calls[3:]] == [sorted(client.calls[1])]
    assert not h.dirty_pods
