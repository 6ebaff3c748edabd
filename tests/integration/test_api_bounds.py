"""What one hostile request can cost the API server, over real gRPC on loopback: each test sends
the request and, at the same time, a normal client's Get, and checks that the Get is served and
the hostile request refused with Kubernetes' code and reason, storing nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from prometheus_client import REGISTRY

from controlplane.apiserver.server import ServerLimits
from controlplane.apiserver.testing import TestAPIServer
from controlplane.apiserver.watch import WatchLimits
from ketch.api import errors, limits, manifest
from ketch.client import transport
from ketch.client.clientset import Batch, Client, pack
from ketch.client.informer import Informer
from ketch.v1 import api_pb2, core_pb2

from ..conftest import eventually
from .cp_helpers import create_node, node

MiB = 1024 * 1024
GENEROUS = 30.0  # seconds a normal Get may take while the server deals with the hostile request


async def served_meanwhile(api: TestAPIServer, hostile: Awaitable[Any]) -> Any:
    """Run hostile and, beside it, a normal client's Get; returns hostile's outcome (its result or
    the exception it raised) once both are done, after checking that the Get was served."""
    normal = api.connect(timeout=GENEROUS)
    try:
        started = asyncio.Event()

        async def get() -> Any:
            await started.wait()
            return await normal.get("Namespace", "default")

        async def run() -> Any:
            started.set()
            return await hostile

        outcome, got = await asyncio.gather(run(), get(), return_exceptions=True)
        assert not isinstance(got, BaseException), f"the normal client was not served: {got!r}"
        assert got.metadata.name == "default"
        return outcome
    finally:
        await normal.close()


def raw(api: TestAPIServer) -> grpc.aio.Channel:
    """A bare channel: sends whatever bytes it is given, retries nothing."""
    return api.channel(options=[("grpc.max_send_message_length", -1)])


def reason_of(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("ketch-reason", "")


async def raw_call(ch: grpc.aio.Channel, name: str, request: bytes | Any, response: Any) -> Any:
    call = ch.unary_unary(f"/ketch.v1.API/{name}", request_serializer=lambda m: m if isinstance(m, bytes)
                          else m.SerializeToString(), response_deserializer=response.FromString)
    return await call(request, timeout=GENEROUS)


@pytest.fixture
async def client(api: TestAPIServer) -> Client:
    assert api.client is not None
    return api.client


# -- patches ---------------------------------------------------------------------------------


def bomb(copies: int) -> str:
    ops: list[dict[str, Any]] = [{"op": "add", "path": "/t", "value": {"v": "x"}}]
    ops += [{"op": "copy", "from": "/t", "path": f"/t/c{i}"} for i in range(copies)]
    return json.dumps(ops)


async def test_json_patch_bomb_is_refused_and_others_are_served(api: TestAPIServer, client: Client) -> None:
    # A 1.2 KB patch: 22 copies held the server for 30 s and left it at 1 GB; 23 killed it.
    before = await client.get("Namespace", "default")
    outcome = await served_meanwhile(api, client.patch("Namespace", "default", bomb(22), patch_type="json"))
    assert isinstance(outcome, errors.Invalid), outcome
    assert "accumulated size increase of copy and add is at least" in str(outcome)
    assert "exceeding the limit 3145728" in str(outcome)
    after = await client.get("Namespace", "default")
    assert after.metadata.resource_version == before.metadata.resource_version


async def test_json_patch_of_more_than_10000_operations_is_413(api: TestAPIServer, client: Client) -> None:
    ops = json.dumps([{"op": "test", "path": "/metadata/name", "value": "default"}] * 10_001)
    outcome = await served_meanwhile(api, client.patch("Namespace", "default", ops, patch_type="json"))
    assert isinstance(outcome, errors.TooLarge), outcome
    assert str(outcome) == "The allowed maximum operations in a JSON patch is 10000, got 10001"


async def test_deeply_nested_merge_patch_is_a_bad_request(api: TestAPIServer, client: Client) -> None:
    deep = '{"metadata": {"annotations": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    outcome = await served_meanwhile(api, client.patch("Namespace", "default", deep))
    assert isinstance(outcome, errors.BadRequest), outcome
    assert "nested too deeply" in str(outcome)


async def test_merge_patches_cannot_grow_an_object_past_the_object_limit(api: TestAPIServer, client: Client) -> None:
    # Each patch was small enough; the Node they built was not (a 30 MiB Node was stored).
    await create_node(client, node("grow"))

    def images(n: int) -> dict[str, Any]:
        return {"status": {"images": [{"names": [f"i{i}-" + "x" * (700 * 1024)]} for i in range(n)]}}

    await client.patch("Node", "grow", images(1), subresource="status")
    outcome = await served_meanwhile(api, client.patch("Node", "grow", images(3), subresource="status"))
    assert isinstance(outcome, errors.TooLarge), outcome
    assert str(outcome).startswith('Request entity too large: the Node "grow" is ')
    assert str(outcome).endswith("bytes, limit is 1572864")
    stored = await client.get("Node", "grow")
    assert len(stored.status.images) == 1


# -- sizes -----------------------------------------------------------------------------------


def big_status_update(name: str, size: int) -> api_pb2.BatchOp:
    n = core_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name = name
    n.status.volumes_in_use.append("x" * size)
    obj = any_pb2.Any()
    obj.Pack(n)
    return api_pb2.BatchOp(update=api_pb2.UpdateRequest(object=obj, subresource="status"))


@pytest.mark.parametrize("megabytes", [3.5, 10], ids=["3.5MiB", "10MiB"])
async def test_batch_over_3_mib_is_refused_whole(api: TestAPIServer, client: Client, megabytes: float) -> None:
    # Each op was under the object limit, so a 53 MiB Batch was stored.
    names = [f"b{i}" for i in range(int(megabytes) + 1)]
    for name in names:
        await create_node(client, node(name))
    per_op = int(megabytes * MiB / len(names))
    ops = [big_status_update(name, per_op) for name in names]
    outcome = await served_meanwhile(api, client.batch(ops))
    assert isinstance(outcome, errors.TooLarge), outcome
    if megabytes < 4:  # ours, with Kubernetes' words; past 4 MiB gRPC refuses it unread
        assert str(outcome) == "Request entity too large: limit is 3145728"
    for name in names:
        assert not (await client.get("Node", name)).status.volumes_in_use


async def test_request_between_3_and_4_mib_gets_kubernetes_413_with_reason(api: TestAPIServer) -> None:
    async with raw(api) as ch:
        req = api_pb2.BatchRequest(ops=[big_status_update("n", int(3.2 * MiB))])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw_call(ch, "Batch", req, api_pb2.BatchResponse)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(info.value) == "RequestEntityTooLarge"
    assert info.value.details() == "Request entity too large: limit is 3145728"


async def test_batch_of_patches_is_bounded_in_bytes_read_and_written(api: TestAPIServer, client: Client) -> None:
    # 3 MiB of tiny patches to a 1.4 MB object made the server build one 1.4 MB object per patch.
    await create_node(client, node("fat"))
    await client.patch("Node", "fat", {"status": {"images": [{"names": ["x" * 1_400_000]}]}}, subresource="status")
    batch = Batch()
    for i in range(40):
        batch.patch("Node", "fat", {"metadata": {"labels": {"step": str(i)}}})
    outcomes = await served_meanwhile(api, client.batch(batch))
    done = [o for o in outcomes if o.error is None]
    refused = [o for o in outcomes if o.error is not None]
    assert done and refused, "some patches fit in the batch's budget, the rest do not"
    assert len(done) * 2 * 1_400_000 <= limits.MAX_BATCH_BYTES + 4 * 1_400_000
    assert all(isinstance(o.error, errors.TooLarge) for o in refused)
    assert "bytes of objects read and written by one Batch" in str(refused[0].error)
    fat = await client.get("Node", "fat")
    assert fat.metadata.labels["step"] == str(len(done) - 1)


# -- selectors -------------------------------------------------------------------------------


def huge_selector(size: int) -> str:
    head = "app in ("
    return head + ",".join(["v"] * ((size - len(head) - 1) // 2)) + ")"


async def test_huge_selector_on_a_watch_is_a_fast_bad_request(api: TestAPIServer, client: Client) -> None:
    # The parser was quadratic: a 1.5 MB selector on a watch froze the server for 22 s.
    async def watch() -> None:
        async for _ in client.watch("Pod", label_selector=huge_selector(1_500_000)):
            pass

    outcome = await served_meanwhile(api, watch())
    assert isinstance(outcome, errors.BadRequest), outcome
    assert "the limit is 65536" in str(outcome)


async def test_huge_selector_on_a_list_is_refused(api: TestAPIServer, client: Client) -> None:
    # 10 MB on a list held the server for minutes; it is now over the request size limit.
    outcome = await served_meanwhile(api, client.list("Pod", label_selector=huge_selector(10_000_000)))
    assert isinstance(outcome, errors.TooLarge), outcome
    outcome = await served_meanwhile(api, client.list("Pod", label_selector=huge_selector(2_000_000)))
    assert isinstance(outcome, errors.BadRequest), outcome


@pytest.mark.parametrize("selector", ["tier>high", "x=" + "v" * 64, "-app"])
async def test_a_selector_kubernetes_refuses_is_a_bad_request_on_list_and_watch(client: Client, selector: str) -> None:
    # Each listed nothing (no label can match it) where Kubernetes answers 400 naming the problem.
    with pytest.raises(errors.BadRequest, match=r"^unable to parse requirement: "):
        await client.list("Pod", label_selector=selector)

    async def watch() -> None:
        async for _ in client.watch("Pod", label_selector=selector):
            pass

    with pytest.raises(errors.BadRequest, match=r"^unable to parse requirement: "):
        await watch()


# -- malformed messages ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Get", "Create", "Batch", "List"])
async def test_undecodable_request_is_invalid_argument(api: TestAPIServer, method: str) -> None:
    async with raw(api) as ch:
        err = await served_meanwhile(api, raw_call(ch, method, b"\xff\xff\xff\xff", api_pb2.ObjectResponse))
    assert isinstance(err, grpc.aio.AioRpcError), err
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(err) == "BadRequest"
    assert "cannot decode the" in (err.details() or "")


async def test_undecodable_watch_request_is_invalid_argument(api: TestAPIServer) -> None:
    async with raw(api) as ch:
        call = ch.unary_stream("/ketch.v1.API/WatchBatched", request_serializer=lambda b: b,
                               response_deserializer=api_pb2.WatchEventList.FromString)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call(b"\x0a\xff", timeout=GENEROUS):
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(info.value) == "BadRequest"


async def test_undecodable_object_inside_an_any_is_invalid_argument(api: TestAPIServer) -> None:
    bad = any_pb2.Any(type_url="type.googleapis.com/ketch.v1.Pod", value=b"\x0a\x05\xff")
    async with raw(api) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw_call(ch, "Create", api_pb2.CreateRequest(object=bad), api_pb2.ObjectResponse)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode the Pod" in (info.value.details() or "")


def _job_with_nan_port(value: float) -> Any:
    job = manifest.from_dict({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nan"},
                              "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                                  {"name": "c", "image": "x", "command": ["true"]}]}}}})
    job.spec.template.spec.containers[0].readiness_probe.tcp_socket.port.number_value = value
    return job


@pytest.mark.parametrize(("value", "shown"), [(float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf")])
async def test_a_number_json_cannot_carry_is_invalid_argument_naming_the_field(
        api: TestAPIServer, client: Client, caplog: pytest.LogCaptureFixture, value: float, shown: str) -> None:
    # A free-form or int-or-string field holds a double: NaN reached validation's int() (INTERNAL).
    before = api.store.revision
    async with raw(api) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw_call(ch, "Create", api_pb2.CreateRequest(object=pack(_job_with_nan_port(value))),
                           api_pb2.ObjectResponse)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(info.value) == "BadRequest"
    assert info.value.details() == ("cannot decode the Job: spec.template.spec.containers[0].readinessProbe."
                                    f"tcpSocket.port: unsupported value: {shown}")
    assert api.store.revision == before
    assert (await client.list("Job"))[0] == []
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]


async def test_an_error_naming_a_huge_value_reaches_the_client_with_its_code_and_reason(
        api: TestAPIServer, client: Client) -> None:
    # The status message rides in the trailers; past gRPC's metadata limit the client saw only
    # "Stream removed (received metadata size exceeds hard limit ...)", as RESOURCE_EXHAUSTED.
    ns = namespace("huge")
    ns.metadata.labels["app"] = "v" * 20_000
    with pytest.raises(errors.Invalid) as invalid:
        await client.create(ns)
    assert str(invalid.value) == ('The Namespace "huge" is invalid: metadata.labels: Invalid value: '
                                  f'"{"v" * 1024}... (20000 characters)": must be no more than 63 characters')
    with pytest.raises(errors.NotFound) as missing:
        await client.get("Job", "j" * 20_000)
    text = str(missing.value)
    assert text.startswith('jobs.batch "jjj') and text.endswith("... (clipped: the message had 20023 characters)")
    with pytest.raises(errors.NotFound) as missing:
        await client.get("Job", "\u00e9" * 20_000)  # 2 bytes of UTF-8, 6 once percent-encoded
    assert str(missing.value).startswith('jobs.batch "\u00e9\u00e9')
    assert (await client.list("Namespace", label_selector="app"))[0] == []


# -- requests in flight ----------------------------------------------------------------------


class Gate:
    """Holds every call of an async function until opened, counting who waits."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.open = asyncio.Event()
        self.waiting = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting += 1
        await self.open.wait()
        return await self.fn(*args, **kwargs)


def namespace(name: str) -> core_pb2.Namespace:
    ns = core_pb2.Namespace(api_version="v1", kind="Namespace")
    ns.metadata.name = name
    return ns


@pytest.fixture
async def tight() -> AsyncIterator[TestAPIServer]:
    """A server that serves at most 2 writes and 2 reads at once."""
    async with TestAPIServer(server_limits=ServerLimits(max_requests_inflight=2,
                                                        max_mutating_requests_inflight=2)) as server:
        yield server


async def test_writes_over_the_inflight_limit_get_429_and_reads_are_still_served(tight: TestAPIServer) -> None:
    gate = Gate(tight.store.commit)
    tight.store.commit = gate  # type: ignore[method-assign]
    async with raw(tight) as ch:
        create = ch.unary_unary("/ketch.v1.API/Create", request_serializer=api_pb2.CreateRequest.SerializeToString,
                                response_deserializer=api_pb2.ObjectResponse.FromString)

        def request(i: int) -> api_pb2.CreateRequest:
            obj = any_pb2.Any()
            obj.Pack(namespace(f"n{i}"))
            return api_pb2.CreateRequest(object=obj)

        held = [asyncio.ensure_future(create(request(i), timeout=GENEROUS)) for i in range(2)]
        await eventually(lambda: gate.waiting == 2, what="two writes in flight")
        refused = await asyncio.gather(*(create(request(i), timeout=GENEROUS) for i in range(2, 5)),
                                       return_exceptions=True)
        for err in refused:
            assert isinstance(err, grpc.aio.AioRpcError), err
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(err) == "TooManyRequests"
            assert err.details() == "Too many requests, please try again later."
        assert tight.client is not None
        assert (await tight.client.get("Namespace", "default")).metadata.name == "default"
        gate.open.set()
        for fut in held:
            await fut
    names = {ns.metadata.name for ns in (await tight.client.list("Namespace"))[0]}
    assert {"n0", "n1"} <= names and not {"n2", "n3", "n4"} & names


async def test_client_library_retries_429_with_backoff(tight: TestAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(tight.store.commit)
    tight.store.commit = gate  # type: ignore[method-assign]
    delays: list[float] = []
    real_delay = transport.retry_delay

    def counting(attempt: int) -> float:
        delays.append(real_delay(attempt))
        if len(delays) >= 3:
            gate.open.set()  # the server frees up once clients have been refused a few times
        return delays[-1]

    monkeypatch.setattr(transport, "retry_delay", counting)
    client = tight.connect()
    try:
        created = await asyncio.gather(*(client.create(namespace(f"r{i}")) for i in range(5)))
    finally:
        await client.close()
    assert [ns.metadata.name for ns in created] == [f"r{i}" for i in range(5)]
    assert len(delays) >= 3


async def test_informer_syncs_through_429s(tight: TestAPIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(tight.service.list)
    monkeypatch.setattr(tight.service, "list", gate)
    async with raw(tight) as ch:
        lists = [asyncio.ensure_future(raw_call(ch, "List", api_pb2.ListRequest(kind="Pod"), api_pb2.ListResponse))
                 for _ in range(2)]
        await eventually(lambda: gate.waiting == 2, what="two reads in flight")
        refusals = 0
        real_delay = transport.retry_delay

        def counting(attempt: int) -> float:
            nonlocal refusals
            refusals += 1
            gate.open.set()
            return real_delay(attempt)

        monkeypatch.setattr(transport, "retry_delay", counting)
        assert tight.client is not None
        inf = Informer(tight.client, "Namespace")
        inf.start()
        try:
            assert await inf.wait_for_sync(GENEROUS)
            assert inf.get("", "default") is not None
            assert refusals >= 1
        finally:
            await inf.stop()
        await asyncio.gather(*lists)


async def test_watches_are_not_counted_as_requests_in_flight(tight: TestAPIServer) -> None:
    assert tight.client is not None
    streams = [tight.client.watch("Namespace", allow_bookmarks=True) for _ in range(4)]
    firsts = [await anext(s) for s in streams]
    assert all(ev.type in ("ADDED", "BOOKMARK") for ev in firsts)
    assert (await tight.client.get("Namespace", "default")).metadata.name == "default"
    for s in streams:
        await s.aclose()


# -- watchers that do not keep up ------------------------------------------------------------


@pytest.fixture
async def small_watch() -> AsyncIterator[TestAPIServer]:
    """A server that drops a watcher 20 events behind that has not taken any for 0.2 s."""
    async with TestAPIServer(server_limits=ServerLimits(
            watch=WatchLimits(max_events=20, max_bytes=1 << 20, max_stall=0, backlog_grace=0.2))) as server:
        yield server


def terminated_namespace_watchers() -> float:
    return REGISTRY.get_sample_value("apiserver_terminated_watchers_total",
                                     {"group": "", "resource": "namespaces"}) or 0.0


async def test_watcher_that_never_reads_is_dropped_and_its_stream_ends(small_watch: TestAPIServer,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    # 500 such watchers held 308 MB after 5,000 writes: each queued every event.
    api = small_watch
    terminated_before = terminated_namespace_watchers()
    assert api.client is not None
    # A window that stays small whatever the client's BDP estimate: the stream blocks soon.
    async with api.channel(options=[("grpc.http2.bdp_probe", 0),
                                                                ("grpc.use_local_subchannel_pool", 1)]) as ch:
        watch = ch.unary_stream("/ketch.v1.API/WatchBatched", request_serializer=api_pb2.WatchRequest.SerializeToString,
                                response_deserializer=api_pb2.WatchEventList.FromString)
        call = watch(api_pb2.WatchRequest(kind="Namespace", label_selector="slow=yes"), timeout=120)
        await eventually(lambda: len(api.hub.watchers.get("Namespace", ())) == 1, what="the watch to start")
        written = 0

        async def write_until_dropped() -> bool:
            nonlocal written
            batch = Batch()
            for _ in range(10):
                ns = namespace(f"s{written}")
                ns.metadata.labels["slow"] = "yes"
                ns.metadata.annotations["fill"] = "x" * 2000
                batch.create(ns)
                written += 1
            await served_meanwhile(api, api.client.batch(batch))
            # The hub let go of it (and of what it had queued) without the client reading anything.
            return not api.hub.watchers.get("Namespace")

        await eventually(write_until_dropped, what="the slow watcher to be dropped")
        # Operators see it as kube-apiserver shows it: counted, and a warning that names the kind.
        assert terminated_namespace_watchers() == terminated_before + 1
        assert any("forcing Namespace watcher close due to unresponsiveness" in r.getMessage()
                   for r in caplog.records if r.levelname == "WARNING")
        revisions = []
        async for msg in call:
            revisions += [int(ev.resource_version) for ev in msg.events]
        # The stream ended cleanly after what had been sent: the client resumes from the last one.
        assert await call.code() == grpc.StatusCode.OK
    assert 0 < len(revisions) < written
    assert revisions == sorted(revisions)


@pytest.fixture
async def small_backlog() -> AsyncIterator[TestAPIServer]:
    """A backlog bound of 20 events with the default grace (1 s): the writer's turn between two
    bursts is the rest of a 100-create commit, which can take longer than small_watch's 0.2 s on
    a busy machine; the grace is what is tested, not how fast this machine is."""
    async with TestAPIServer(server_limits=ServerLimits(
            watch=WatchLimits(max_events=20, max_bytes=1 << 20, max_stall=0))) as server:
        yield server


async def test_a_burst_beyond_the_backlog_bound_does_not_drop_a_watcher_that_keeps_up(
        small_backlog: TestAPIServer) -> None:
    # One commit can publish more events than max_events at once (a big Job's creates and binds):
    # the watcher's writer had no turn to take them yet, so it is not behind.
    api = small_backlog
    assert api.client is not None
    terminated_before = terminated_namespace_watchers()
    seen: list[str] = []

    async def watch() -> None:
        async for ev in api.client.watch("Namespace", label_selector="burst=yes"):
            seen.append(ev.object.metadata.name)

    watching = asyncio.create_task(watch())
    try:
        await eventually(lambda: len(api.hub.watchers.get("Namespace", ())) == 1, what="the watch to start")
        await asyncio.sleep(1.2)  # longer than the grace: a waiting writer is not behind however long it waits
        for round_ in range(3):
            batch = Batch()
            for i in range(100):  # five times max_events, in one commit
                ns = namespace(f"b{round_}-{i}")
                ns.metadata.labels["burst"] = "yes"
                batch.create(ns)
            await api.client.batch(batch)
        await eventually(lambda: len(seen) == 300, what="every namespace of the bursts")
        assert len(api.hub.watchers.get("Namespace", ())) == 1
        assert terminated_namespace_watchers() == terminated_before
    finally:
        watching.cancel()


async def test_max_connection_age_closes_the_stream_of_a_client_that_never_reads() -> None:
    async with TestAPIServer(server_limits=ServerLimits(max_connection_age=1.0)) as api, \
            api.channel(options=[("grpc.http2.bdp_probe", 0),
                                                            ("grpc.use_local_subchannel_pool", 1)]) as ch:
        assert api.client is not None
        watch = ch.unary_stream("/ketch.v1.API/WatchBatched", request_serializer=api_pb2.WatchRequest.SerializeToString,
                                response_deserializer=api_pb2.WatchEventList.FromString)
        call = watch(api_pb2.WatchRequest(kind="Namespace"), timeout=120)
        await eventually(lambda: len(api.hub.watchers.get("Namespace", ())) == 1, what="the watch to start")
        batch = Batch()
        for i in range(100):
            ns = namespace(f"a{i}")
            ns.metadata.annotations["fill"] = "x" * 4000
            batch.create(ns)
        await api.client.batch(batch)
        # The client reads nothing; the server closes the connection under the stream (age 1 s,
        # grace 1 s), whatever the stream was still trying to send, and lets go of the watcher
        # (100 events are well inside its limits: only the closed connection ends it).
        await eventually(lambda: not api.hub.watchers.get("Namespace"), timeout=GENEROUS,
                         what="the stuck stream to be closed")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_watcher_stalled_past_max_stall_is_dropped(api: TestAPIServer) -> None:
    from controlplane.apiserver.watch import Filter
    from ketch.api.selectors import EVERYTHING

    now = [1000.0]
    api.hub.clock = lambda: now[0]
    w = api.hub.watch("Namespace", Filter("", EVERYTHING, ()), api.store.revision,
                      WatchLimits(max_events=0, max_bytes=0, max_stall=60))
    assert api.client is not None
    await api.client.create(namespace("a"))
    assert not w.closed and len(w.items) == 1  # its writer is busy (not waiting) but not for long
    now[0] += 61
    await api.client.create(namespace("b"))
    assert w.closed and not w.items


async def test_idle_watcher_is_never_stalled(api: TestAPIServer) -> None:
    from controlplane.apiserver.watch import Filter
    from ketch.api.selectors import EVERYTHING

    now = [1000.0]
    api.hub.clock = lambda: now[0]
    w = api.hub.watch("Namespace", Filter("", EVERYTHING, ()), api.store.revision,
                      WatchLimits(max_events=0, max_bytes=0, max_stall=60))
    waiter = asyncio.ensure_future(w.next_batch(None))
    await eventually(lambda: w.waiting, what="the writer to wait")
    now[0] += 3600  # an hour with nothing to send
    assert api.client is not None
    await api.client.create(namespace("late"))
    batch = await waiter
    assert not w.closed and [e[1].name for e in batch] == ["late"]


async def test_informer_resumes_after_its_watch_is_dropped(small_watch: TestAPIServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    api = small_watch
    assert api.client is not None
    watches = []
    real_watch = api.hub.watch

    def counting(*args: Any) -> Any:
        watches.append(args[2])  # from_rev
        return real_watch(*args)

    monkeypatch.setattr(api.hub, "watch", counting)
    inf = Informer(api.client, "Namespace")
    inf.start()
    try:
        assert await inf.wait_for_sync(GENEROUS)
        await eventually(lambda: len(watches) == 1, what="the informer to watch")
        # 100 events in one commit reach the watcher, and (by this clock, which moves 0.05 s each
        # time the hub reads it) its writer takes none for longer than the grace: 20 behind for
        # 0.2 s, it is dropped; the informer watches again from where it was.
        ticks = [time.monotonic()]

        def racing_clock() -> float:
            ticks[0] += 0.05
            return ticks[0]

        monkeypatch.setattr(api.hub, "clock", racing_clock)
        batch = Batch()
        for i in range(100):
            batch.create(namespace(f"burst-{i}"))
        await api.client.batch(batch)
        await eventually(lambda: all(inf.get("", f"burst-{i}") is not None for i in range(100)),
                         what="the informer's cache to hold every object")
        assert len(watches) >= 2 and watches[1] is not None, "it resumed from a resourceVersion"
        assert inf.relists == 1, "without listing again"
        await api.client.create(namespace("after"))
        await eventually(lambda: inf.get("", "after") is not None, what="the informer to keep watching")
    finally:
        await inf.stop()


async def test_many_calls_at_once_on_one_connection_wait_for_a_stream() -> None:
    # Past the server's 1,000 streams per connection a client waits for a free stream; gRPC's
    # default "overload protection" refused them instead (UNAVAILABLE: RST_STREAM, REFUSED_STREAM).
    async with TestAPIServer(server_limits=ServerLimits(max_requests_inflight=0,
                                                        max_mutating_requests_inflight=0)) as api, raw(api) as ch:
        get = ch.unary_unary("/ketch.v1.API/Get", request_serializer=api_pb2.GetRequest.SerializeToString,
                             response_deserializer=api_pb2.ObjectResponse.FromString)
        req = api_pb2.GetRequest(kind="Namespace", name="default")
        await get(req, timeout=GENEROUS)
        results = await asyncio.gather(*(get(req, timeout=120) for _ in range(2500)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of 2500 failed, the first: {failed[0]!r}"
